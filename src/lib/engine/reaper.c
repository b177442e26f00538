/*
 * reaper.c - background reclaim of deleted volumes and rolled-back trees.
 *
 * A deleted volume keeps its record (flag DELETING) until its tree is
 * empty; the partially emptied tree, committed like any other, is the
 * cursor, so reclaim resumes after a crash where the last commit left it.
 *
 * One step, under pool->lock with commit_lock shared, does a bounded amount
 * of work (at most one leaf: F data blocks):
 *   - a subtree whose root is shared (refcount > 1) only loses a reference
 *     and is unhooked: deleting stops at shared nodes (dm-thin);
 *   - an unshared leaf has its data blocks released, then is freed and
 *     unhooked from its (shadowed) parent;
 *   - an unshared interior node found empty is freed and unhooked.
 * Unhooking shadows the path from the root, so it allocates at most depth
 * blocks per step; it may use the reserve.  Cost: proportional to the
 * blocks freed plus the shared boundary, never to the volume's size.
 */
#include <stdio.h>
#include <time.h>

#include "engine/engine_private.h"
#include "engine/keys.h"

static vrec *first_deleting(vms_pool *p)
{
	for (size_t i = 0; i < p->nvidx; i++) {
		vrec *r = &p->recs[p->vidx[i].slot];
		if (r->flags & VREC_DELETING)
			return r;
	}
	return NULL;
}

/* One bounded step.  Returns 1 when a step was done, 0 when nothing is
 * left to reap, or a negative error.  pool->lock held (dropped to load). */
int reaper_step(vms_pool *p, uint64_t *freed)
{
	*freed = 0;
	if (p->keys)
		return k_reap_step(p, freed);
	for (;;) {
		vrec *r = first_deleting(p);
		if (!r)
			return 0;
		if (!r->root) {
			vol_remove(p, r);
			return 1;
		}
		uint64_t id = r->id, cur = r->root, lblk = 0;
		uint32_t crc = r->root_crc;
		int lev = r->depth - 1, rc;
		if (p->ref[cur] > 1) { /* the whole tree is shared */
			sm_unref_meta(p, cur);
			tree_unhook(p, r, 0, lev);
			vol_remove(p, r);
			return 1;
		}
		for (;;) {
			node *n = cache_get(p, cur);
			if (!n) {
				if ((rc = node_load_unlocked(p, cur, crc, lev)) < 0)
					return rc;
				break; /* restart: the lock was dropped */
			}
			r = vol_find(p, id);
			if (lev == 0) { /* an unshared leaf: release its data */
				for (unsigned i = 0; i < p->fanout; i++) {
					uint64_t d = ent_blk(n, i);
					if (d)
						*freed += (uint64_t)sm_unref(p, d);
				}
				if ((rc = tree_unhook(p, r, lblk, 0)) < 0)
					return rc;
				*freed += (uint64_t)sm_unref_meta(p, cur);
				return 1;
			}
			unsigned i;
			for (i = 0; i < p->fanout; i++)
				if (ent_blk(n, i))
					break;
			if (i == p->fanout) { /* an empty interior node */
				if ((rc = tree_unhook(p, r, lblk, lev)) < 0)
					return rc;
				*freed += (uint64_t)sm_unref_meta(p, cur);
				return 1;
			}
			uint64_t c = ent_blk(n, i);
			lblk += i * p->fpow[lev];
			if (p->ref[c] > 1) { /* shared below: drop one reference */
				if ((rc = tree_unhook(p, r, lblk, lev - 1)) < 0)
					return rc;
				sm_unref_meta(p, c);
				return 1;
			}
			crc = ent_crc(n, i);
			cur = c;
			lev--;
		}
	}
}

/* Wait ns nanoseconds, or less when kicked (close, rate change). */
static void rate_wait(vms_pool *p, uint64_t ns)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ns += (uint64_t)ts.tv_nsec;
	ts.tv_sec += (time_t)(ns / 1000000000ull);
	ts.tv_nsec = (long)(ns % 1000000000ull);
	pthread_mutex_lock(&p->bg_lock);
	if (!p->stopping)
		pthread_cond_timedwait(&p->bg_cond, &p->bg_lock, &ts);
	pthread_mutex_unlock(&p->bg_lock);
}

void *reaper_main(void *arg)
{
	vms_pool *p = arg;
	uint64_t since_commit = 0;
	for (;;) {
		pthread_mutex_lock(&p->bg_lock);
		if (p->stopping) {
			pthread_mutex_unlock(&p->bg_lock);
			break;
		}
		pthread_mutex_unlock(&p->bg_lock);

		uint64_t freed = 0;
		int rc;
		pthread_rwlock_rdlock(&p->commit_lock);
		pthread_mutex_lock(&p->lock);
		rc = p->readonly ? 0 : reaper_step(p, &freed);
		pthread_mutex_unlock(&p->lock);
		pthread_rwlock_unlock(&p->commit_lock);
		if (rc == KREAP_EXCLUSIVE) { /* a step that must not overlap any I/O */
			pthread_rwlock_wrlock(&p->commit_lock);
			pthread_mutex_lock(&p->lock);
			p->gc_exclusive = 1;
			rc = p->readonly ? 0 : reaper_step(p, &freed);
			p->gc_exclusive = 0;
			pthread_mutex_unlock(&p->lock);
			pthread_rwlock_unlock(&p->commit_lock);
			if (rc == KREAP_EXCLUSIVE)
				rc = vms_error_set(VMS_EIO, "internal: collector step wants exclusivity twice");
		}

		/* Background commits only when the pool has periodic commits:
		 * with commit_interval_ms = UINT32_MAX every commit is asked for
		 * (or made inside an operation), which tests rely on. */
		int may_commit = p->commit_interval_ms != UINT32_MAX;
		pthread_mutex_lock(&p->bg_lock);
		p->reap_stuck = rc == VMS_ENOSPC;
		p->reap_rc = rc < 0 && rc != VMS_ENOSPC ? rc : 0;
		if (p->reap_rc)
			snprintf(p->reap_msg, sizeof(p->reap_msg), "%s", vms_error_last());
		p->reap_gen++;
		pthread_cond_broadcast(&p->reap_cond);
		if (rc <= 0) {
			/* Nothing to do, or an error (ENOSPC until the next commit
			 * frees deferred blocks, or a damaged tree): wait for a kick
			 * or a while, then look again. */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += rc < 0 ? 1 : 5;
			if (!p->stopping)
				pthread_cond_timedwait(&p->bg_cond, &p->bg_lock, &ts);
			pthread_mutex_unlock(&p->bg_lock);
			if (rc == VMS_ENOSPC && may_commit)
				(void)vms_pool_commit(p);
			continue;
		}
		uint64_t rate = p->reap_rate;
		pthread_mutex_unlock(&p->bg_lock);
		since_commit += freed + 1;
		if (since_commit > 65536 && may_commit) { /* let freed space become reusable */
			since_commit = 0;
			(void)vms_pool_commit(p);
		}
		if (rate && freed)
			rate_wait(p, freed * 1000000000ull / rate);
	}
	return NULL;
}

void vms_pool_set_reap_rate(vms_pool *p, uint64_t blocks_per_sec)
{
	pthread_mutex_lock(&p->bg_lock);
	p->reap_rate = blocks_per_sec;
	pthread_cond_broadcast(&p->bg_cond);
	pthread_mutex_unlock(&p->bg_lock);
}

int vms_pool_reap_wait(vms_pool *p)
{
	uint64_t stuck_avail = UINT64_MAX;
	for (;;) {
		pthread_mutex_lock(&p->bg_lock);
		uint64_t gen = p->reap_gen; /* read before ndeleting: no lost wake-up */
		pthread_mutex_unlock(&p->bg_lock);
		pthread_mutex_lock(&p->lock);
		uint64_t left = p->ndeleting + (p->keys ? k_reap_pending(p) : 0), avail = sm_avail(p);
		int ro = p->readonly;
		pthread_mutex_unlock(&p->lock);
		if (!left)
			return 0;
		if (ro)
			return vms_error_set(VMS_EROFS, "pool is read-only: %s", p->ro_reason);
		pthread_mutex_lock(&p->bg_lock);
		int stuck = p->reap_stuck, failed = p->reap_rc;
		char msg[sizeof(p->reap_msg)];
		memcpy(msg, p->reap_msg, sizeof(msg));
		p->reap_stuck = 0;
		pthread_mutex_unlock(&p->bg_lock);
		if (failed) /* e.g. a damaged tree: waiting would never end */
			return vms_error_set(failed, "reclaiming deleted volumes: %s", msg);
		if (stuck) { /* the reserve ran out: commits end the deferral of freed blocks */
			if (avail == stuck_avail) /* and they did not help: truly full */
				return vms_error_set(VMS_ENOSPC, "reclaiming deleted volumes: pool is full");
			int rc = vms_pool_commit(p);
			if (rc == 0)
				rc = vms_pool_commit(p);
			if (rc < 0)
				return rc;
			pthread_mutex_lock(&p->lock);
			stuck_avail = sm_avail(p);
			pthread_mutex_unlock(&p->lock);
		}
		pthread_mutex_lock(&p->bg_lock);
		pthread_cond_broadcast(&p->bg_cond);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (p->reap_gen == gen)
			pthread_cond_timedwait(&p->reap_cond, &p->bg_lock, &ts);
		pthread_mutex_unlock(&p->bg_lock);
	}
}
