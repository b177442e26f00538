/*
 * vtree.c - the version tree of one family, in memory
 * (docs/design/index-v3.md, "Version tree").
 *
 * Layout: one flat array of vt_node (ids, counts, numbers and the engine's
 * record id: 32 bytes), sorted by version id in DESCENDING order.  Ids are
 * handed out downwards, so a new version has the smallest id of its family
 * and vt_add appends it at the end: O(1) amortized, and loading a family at
 * open (parents before children, i.e. descending ids) is O(n) in all.  A
 * version added with an id in the middle costs an O(log n) search and a
 * memmove of the versions after it, as does removing a version (removing
 * the newest is O(1)).  Finding a version is a
 * binary search.  The array shrinks when it is less than a quarter full.
 *
 * Invariants (checked by vt_check):
 *   - ids are non-zero and strictly decreasing along the array;
 *   - a node's parent is 0 (a root; several roots may exist) or an existing
 *     version with a larger id, so it sits earlier in the array: every
 *     parent precedes its children, and the tree has no cycles;
 *   - nchildren is the number of nodes naming the node as parent.
 * Every change validates first and fails with the tree unchanged.
 *
 * Ancestor test: pre is the node's number in a preorder walk of the forest
 * and post the largest preorder number in its subtree, so a is an ancestor
 * of v (or v itself) exactly when pre[a] <= pre[v] <= post[a]: O(log n)
 * (the two binary searches).  Instead of keeping jump pointers, the numbers
 * are rebuilt lazily: vt_add and vt_reparent_children set t->stale, and
 * the next vt_is_ancestor (or vt_number, for callers reading pre/post)
 * renumbers the whole tree in O(n): two passes over the array, no recursion
 * and no stack, since a linear history is a tree as deep as it is long.
 * vt_remove leaves the numbers valid: the removed leaf only leaves a gap in
 * the numbering.  Queries answered by the ids alone (a < v: never an
 * ancestor) do not renumber.
 *
 * Not thread-safe: vt_is_ancestor may renumber, so callers serialize every
 * call on a tree (the engine holds pool->lock).
 */
#include <stdlib.h>
#include <string.h>

#include "engine/keys.h"

#define VT_MIN_CAP 16
#define VT_NO_PARENT UINT32_MAX

void vt_init(vtree *t)
{
	memset(t, 0, sizeof(*t));
}

void vt_free(vtree *t)
{
	free(t->v);
	vt_init(t);
}

size_t vt_count(const vtree *t)
{
	return t->n;
}

/* The first index in v[lo, hi) whose id is <= ver (hi when none): where ver
 * is, or would be inserted, in the descending array. */
static size_t seek(const vt_node *v, size_t lo, size_t hi, uint32_t ver)
{
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid].ver > ver)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Index of ver, or t->n when absent. */
static size_t index_of(const vtree *t, uint32_t ver)
{
	size_t i = seek(t->v, 0, t->n, ver);
	return i < t->n && t->v[i].ver == ver ? i : t->n;
}

const vt_node *vt_find(const vtree *t, uint32_t ver)
{
	size_t i = index_of(t, ver);
	return i < t->n ? &t->v[i] : NULL;
}

/* Index of `parent`, which exists and precedes index i (the invariant): a
 * search galloping back from i, since a parent is usually close to its
 * child (O(1) along a linear history, O(log n) at worst). */
static size_t parent_index(const vt_node *v, size_t i, uint32_t parent)
{
	size_t hi = i, step = 1, lo;
	for (;;) {                       /* v[hi].ver < parent */
		if (step >= hi) {
			lo = 0;
			break;
		}
		lo = hi - step;
		if (v[lo].ver >= parent)
			break;
		hi = lo;
		step *= 2;
	}
	return seek(v, lo, hi, parent);
}

/*
 * Number the forest.  Pass 1 visits children before parents (from the end
 * of the array): post accumulates subtree sizes, and a child's pre records
 * its subtree's offset within its parent's (1 + the sizes of the siblings
 * visited before it).  Pass 2 visits parents before children (from the
 * start): a root takes the next free range, a child its parent's pre plus
 * its offset.  Between the passes each node's nchildren field holds its
 * parent's index instead (so numbering needs no memory and cannot fail);
 * pass 2 counts the children back into it.
 */
int vt_number(vtree *t)
{
	vt_node *v = t->v;
	size_t n = t->n;
	uint32_t next = 0;

	if (!t->stale)
		return 0;
	for (size_t i = 0; i < n; i++)
		v[i].post = 1;
	for (size_t i = n; i-- > 0;) {
		if (v[i].parent == 0) {
			v[i].nchildren = VT_NO_PARENT;
			continue;
		}
		size_t p = parent_index(v, i, v[i].parent);
		v[i].nchildren = (uint32_t)p;
		v[i].pre = v[p].post;
		v[p].post += v[i].post;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t size = v[i].post, up = v[i].nchildren;
		v[i].nchildren = 0;
		if (up == VT_NO_PARENT) {
			v[i].pre = next;
			next += size;
		} else {
			v[i].pre += v[up].pre;
			v[up].nchildren++;       /* up < i: its count has restarted */
		}
		v[i].post = v[i].pre + size - 1;
	}
	t->stale = 0;
	return 0;
}

/* Make room for one more node; 0 or VMS_ENOMEM (nothing changed). */
static int reserve_one(vtree *t)
{
	if (t->n < t->cap)
		return 0;
	size_t nc = t->cap ? t->cap * 2 : VT_MIN_CAP;
	vt_node *v = realloc(t->v, nc * sizeof(*v));
	if (!v)
		return vms_error_set(VMS_ENOMEM, "out of memory growing the version tree to %zu", nc);
	t->v = v;
	t->cap = nc;
	return 0;
}

int vt_add(vtree *t, uint32_t ver, uint32_t parent)
{
	size_t i, ip = 0;
	int rc;

	if (ver == 0)
		return vms_error_set(VMS_EINVAL, "version id 0 is reserved");
	if (parent != 0 && parent <= ver)
		return vms_error_set(VMS_EINVAL, "version %u cannot be a child of %u: "
		                     "a parent's id must be larger", ver, parent);
	i = seek(t->v, 0, t->n, ver);
	if (i < t->n && t->v[i].ver == ver)
		return vms_error_set(VMS_EEXISTS, "version %u already exists", ver);
	if (parent != 0) {
		ip = seek(t->v, 0, i, parent);
		if (ip == i || t->v[ip].ver != parent)
			return vms_error_set(VMS_ENOTFOUND, "parent version %u of %u not found", parent, ver);
	}
	if ((rc = reserve_one(t)) < 0)
		return rc;
	memmove(&t->v[i + 1], &t->v[i], (t->n - i) * sizeof(*t->v));
	t->v[i] = (vt_node){.ver = ver, .parent = parent};
	t->n++;
	if (parent != 0)
		t->v[ip].nchildren++;    /* ip < i: not moved */
	t->stale = 1;
	return 0;
}

int vt_remove(vtree *t, uint32_t ver)
{
	size_t i = index_of(t, ver);

	if (i == t->n)
		return vms_error_set(VMS_ENOTFOUND, "version %u not found", ver);
	if (t->v[i].nchildren)
		return vms_error_set(VMS_EDEPEND, "version %u has %u children", ver, t->v[i].nchildren);
	if (t->v[i].parent != 0)
		t->v[index_of(t, t->v[i].parent)].nchildren--;
	t->n--;
	memmove(&t->v[i], &t->v[i + 1], (t->n - i) * sizeof(*t->v));
	/* No renumbering needed (a leaf left a gap).  Give memory back when the
	 * array is mostly empty; a failed shrink keeps the larger array. */
	if (t->cap > VT_MIN_CAP && t->n < t->cap / 4) {
		size_t nc = t->cap / 2;
		vt_node *v = realloc(t->v, nc * sizeof(*v));
		if (v) {
			t->v = v;
			t->cap = nc;
		}
	}
	return 0;
}

int vt_reparent_children(vtree *t, uint32_t from, uint32_t to)
{
	size_t ifrom = index_of(t, from), ito = index_of(t, to), i, left;

	if (ifrom == t->n)
		return vms_error_set(VMS_ENOTFOUND, "version %u not found", from);
	if (ito == t->n)
		return vms_error_set(VMS_ENOTFOUND, "version %u not found", to);
	left = t->v[ifrom].nchildren;
	if (from == to || left == 0)
		return 0;
	/* Children follow their parent, the largest id first: checking the
	 * first one found checks them all. */
	for (i = ifrom + 1; t->v[i].parent != from; i++)
		;
	if (t->v[i].ver >= to)
		return vms_error_set(VMS_EINVAL, "version %u cannot become a child of %u: "
		                     "a parent's id must be larger", t->v[i].ver, to);
	for (; left > 0; i++) {
		if (t->v[i].parent == from) {
			t->v[i].parent = to;
			left--;
		}
	}
	t->v[ito].nchildren += t->v[ifrom].nchildren;
	t->v[ifrom].nchildren = 0;
	t->stale = 1;
	return 0;
}

int vt_children(const vtree *t, uint32_t ver, uint32_t *out, size_t cap)
{
	size_t ip = index_of(t, ver), found = 0, nchildren;

	if (ip == t->n)
		return vms_error_set(VMS_ENOTFOUND, "version %u not found", ver);
	nchildren = t->v[ip].nchildren;
	for (size_t i = ip + 1; found < nchildren && found < cap; i++) {
		if (t->v[i].parent == ver)
			out[found++] = t->v[i].ver;
	}
	return (int)nchildren;
}

int vt_is_ancestor(vtree *t, uint32_t a, uint32_t v)
{
	size_t ia, iv;

	if (a < v)                       /* an ancestor has a larger id */
		return 0;
	if ((iv = index_of(t, v)) == t->n)
		return 0;
	if (a == v)
		return 1;
	if ((ia = index_of(t, a)) == t->n)
		return 0;
	vt_number(t);
	return t->v[ia].pre <= t->v[iv].pre && t->v[iv].pre <= t->v[ia].post;
}

int vt_check(const vtree *t)
{
	uint32_t *count = NULL;
	int rc = 0;

	if (t->n > t->cap || (t->n && !t->v))
		return vms_error_set(VMS_ECORRUPT, "version tree: %zu versions in an array of %zu", t->n, t->cap);
	if (t->n && !(count = calloc(t->n, sizeof(*count))))
		return vms_error_set(VMS_ENOMEM, "out of memory checking the version tree");
	for (size_t i = 0; i < t->n; i++) {
		const vt_node *x = &t->v[i];
		if (x->ver == 0 || (i > 0 && x->ver >= t->v[i - 1].ver)) {
			rc = vms_error_set(VMS_ECORRUPT, "version tree: id %u at %zu out of order", x->ver, i);
			goto done;
		}
		if (x->parent == 0)
			continue;
		size_t p = seek(t->v, 0, i, x->parent);
		if (p == i || t->v[p].ver != x->parent) {
			rc = vms_error_set(VMS_ECORRUPT, "version tree: parent %u of %u missing or not larger",
			                   x->parent, x->ver);
			goto done;
		}
		count[p]++;
	}
	for (size_t i = 0; i < t->n; i++) {
		if (count[i] != t->v[i].nchildren) {
			rc = vms_error_set(VMS_ECORRUPT, "version tree: %u has %u children, counted %u",
			                   t->v[i].ver, t->v[i].nchildren, count[i]);
			goto done;
		}
	}
done:
	free(count);
	return rc;
}
