/*
 * Type analysis and mapping (the paper's section 3.3, modules 2 and 3):
 * from a VM, follow the catalog's mappings VM -> VBD -> VDI -> SR to the
 * SR's location and type, and pick the backend of that type (adapter).
 * A VM's disks all live in the VM's SR (storage organisation, 3.2.2); a
 * disk row that says otherwise is a corrupt catalog.
 */
#include <string.h>

#include "control/control_private.h"

void ctl_map_clear(ctl_map *m)
{
	vms_cat_sr_clear(&m->sr);
	vms_cat_vdi_list_free(m->disks, m->ndisks);
	m->disks = NULL;
	m->ndisks = 0;
}

int ctl_map_vm(ctl_map *m, vms_control *ctl, const vms_cat_vm *vm)
{
	int rc;
	memset(m, 0, sizeof(*m));
	m->vm = *vm;
	if ((rc = vms_cat_sr_get(&m->sr, ctl->cat, vm->sr_uuid)) < 0)
		goto done;
	if (m->sr.state != VMS_STATE_READY) {
		rc = vms_error_set(VMS_EBUSY, "SR '%s' is %s", m->sr.name, vms_obj_state_name(m->sr.state));
		goto done;
	}
	if ((rc = ctl_sr_backend(&m->be, &m->h, ctl, vm->sr_uuid)) < 0)
		goto done;
	if ((rc = vms_cat_vdi_list(&m->disks, &m->ndisks, ctl->cat, vm->uuid, NULL, 0)) < 0)
		goto done;
	for (size_t i = 0; i < m->ndisks; i++) {
		if (strcmp(m->disks[i].sr_uuid, vm->sr_uuid) != 0) {
			rc = vms_error_set(VMS_ECORRUPT, "catalog: disk %s of VM '%s' is in another SR than "
			                   "the VM", m->disks[i].uuid, vm->name);
			goto done;
		}
		if (m->disks[i].state != VMS_STATE_READY || !m->disks[i].ref) {
			rc = vms_error_set(VMS_EBUSY, "disk '%s' of VM '%s' is %s", m->disks[i].name,
			                   vm->name, vms_obj_state_name(m->disks[i].state));
			goto done;
		}
	}
done:
	if (rc < 0)
		ctl_map_clear(m);
	return rc;
}
