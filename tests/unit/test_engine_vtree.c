/*
 * Unit tests of the version tree (src/lib/engine/vtree.c): every function
 * and every rejection (a rejected change leaves the tree as it was), a
 * randomized test against a brute-force reference (a parent array; ancestor
 * by climbing parents), a 100,000-deep linear history, and timings of
 * vt_add and vt_is_ancestor at 20,000 versions (printed).
 */
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "engine/keys.h"
#include "test.h"
#include "vmsnap/error.h"

/* ---- helpers ------------------------------------------------------------ */

/* A copy of a tree's state, to verify a rejected call changed nothing. */
typedef struct saved {
	vt_node *v;
	size_t n, cap;
	int stale;
} saved;

static saved save(const vtree *t)
{
	saved s = {malloc(t->n * sizeof(vt_node) + 1), t->n, t->cap, t->stale};
	if (t->n)
		memcpy(s.v, t->v, t->n * sizeof(vt_node));
	return s;
}

/* 1 when t is as saved; frees the copy. */
static int unchanged(const vtree *t, saved s)
{
	int same = t->n == s.n && t->cap == s.cap && t->stale == s.stale &&
	           (s.n == 0 || memcmp(t->v, s.v, s.n * sizeof(vt_node)) == 0);
	free(s.v);
	return same;
}

static uint32_t parent_of(const vtree *t, uint32_t ver)
{
	const vt_node *x = vt_find(t, ver);
	return x ? x->parent : UINT32_MAX;
}

static uint32_t nchildren_of(const vtree *t, uint32_t ver)
{
	const vt_node *x = vt_find(t, ver);
	return x ? x->nchildren : UINT32_MAX;
}

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/*
 * The forest used by several tests:
 *
 *   100 ─┬─ 90 ─┬─ 80 ── 50
 *        │      └─ 70
 *        └─ 60
 *   95 ── 40          (a second root)
 *   30                (a third root, alone)
 */
static void build_forest(vtree *t)
{
	vt_init(t);
	CHECK_OK(vt_add(t, 100, 0));
	CHECK_OK(vt_add(t, 95, 0));
	CHECK_OK(vt_add(t, 90, 100));
	CHECK_OK(vt_add(t, 80, 90));
	CHECK_OK(vt_add(t, 70, 90));
	CHECK_OK(vt_add(t, 60, 100));
	CHECK_OK(vt_add(t, 50, 80));
	CHECK_OK(vt_add(t, 40, 95));
	CHECK_OK(vt_add(t, 30, 0));
}

/* Ancestor by climbing parents through vt_find: the reference for the
 * hand-built trees. */
static int climb_is_ancestor(const vtree *t, uint32_t a, uint32_t v)
{
	if (!vt_find(t, a) || !vt_find(t, v))
		return 0;
	for (uint32_t x = v; x != 0; x = parent_of(t, x))
		if (x == a)
			return 1;
	return 0;
}

/* Every pair of ids in ids[] (and 0 and a missing id) against climbing. */
static int all_pairs_agree(vtree *t, const uint32_t *ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			if (vt_is_ancestor(t, ids[i], ids[j]) != climb_is_ancestor(t, ids[i], ids[j])) {
				fprintf(stderr, "  is_ancestor(%u, %u) wrong\n", ids[i], ids[j]);
				return 0;
			}
	return 1;
}

/* ---- unit tests ----------------------------------------------------------- */

TEST(vtree_empty)
{
	vtree t;
	uint32_t out[2];
	vt_init(&t);
	CHECK(vt_count(&t) == 0);
	CHECK(vt_find(&t, 1) == NULL);
	CHECK(vt_is_ancestor(&t, 1, 1) == 0);
	CHECK(vt_is_ancestor(&t, 2, 1) == 0);
	CHECK(vt_remove(&t, 1) == VMS_ENOTFOUND);
	CHECK(vt_reparent_children(&t, 2, 1) == VMS_ENOTFOUND);
	CHECK(vt_children(&t, 1, out, 2) == VMS_ENOTFOUND);
	CHECK(vt_check(&t) == 0);
	vt_free(&t);
	CHECK(t.v == NULL && t.n == 0 && t.cap == 0);
	vt_free(&t);                     /* twice is harmless */
}

TEST(vtree_add_and_find)
{
	vtree t;
	build_forest(&t);
	CHECK(vt_count(&t) == 9);
	CHECK(vt_check(&t) == 0);
	CHECK(t.stale);
	/* descending ids, parents before children */
	for (size_t i = 1; i < t.n; i++)
		CHECK(t.v[i].ver < t.v[i - 1].ver);
	CHECK(parent_of(&t, 100) == 0 && nchildren_of(&t, 100) == 2);
	CHECK(parent_of(&t, 90) == 100 && nchildren_of(&t, 90) == 2);
	CHECK(parent_of(&t, 50) == 80 && nchildren_of(&t, 50) == 0);
	CHECK(parent_of(&t, 40) == 95 && nchildren_of(&t, 95) == 1);
	CHECK(parent_of(&t, 30) == 0 && nchildren_of(&t, 30) == 0);
	const vt_node *x = vt_find(&t, 70);
	REQUIRE(x);
	CHECK(x->ver == 70 && x->rec == 0);
	CHECK(vt_find(&t, 75) == NULL && vt_find(&t, 1) == NULL && vt_find(&t, 101) == NULL);
	CHECK(vt_find(&t, 0) == NULL);

	/* ids in the middle and above everything (not handed out downwards) */
	CHECK_OK(vt_add(&t, 85, 90));
	CHECK_OK(vt_add(&t, 200, 0));
	CHECK_OK(vt_add(&t, 199, 200));
	CHECK_OK(vt_add(&t, 1, 199));
	CHECK_OK(vt_add(&t, UINT32_MAX, 0));
	CHECK_OK(vt_add(&t, UINT32_MAX - 1, UINT32_MAX));
	CHECK(vt_count(&t) == 15);
	CHECK(vt_check(&t) == 0);
	CHECK(nchildren_of(&t, 90) == 3);
	CHECK(parent_of(&t, 1) == 199);
	CHECK(t.v[0].ver == UINT32_MAX && t.v[t.n - 1].ver == 1);
	vt_free(&t);
}

TEST(vtree_add_rejects)
{
	vtree t;
	build_forest(&t);
	saved s = save(&t);
	CHECK(vt_add(&t, 0, 0) == VMS_EINVAL);
	CHECK(vt_add(&t, 0, 100) == VMS_EINVAL);
	CHECK(vt_add(&t, 85, 85) == VMS_EINVAL);       /* parent not larger */
	CHECK(vt_add(&t, 85, 80) == VMS_EINVAL);
	CHECK(vt_add(&t, 85, 84) == VMS_EINVAL);       /* ... even if missing */
	CHECK(vt_add(&t, 85, 87) == VMS_ENOTFOUND);    /* parent missing */
	CHECK(vt_add(&t, 85, 1000) == VMS_ENOTFOUND);
	CHECK(vt_add(&t, 1, 2) == VMS_ENOTFOUND);
	CHECK(vt_add(&t, 90, 0) == VMS_EEXISTS);       /* duplicate */
	CHECK(vt_add(&t, 90, 100) == VMS_EEXISTS);
	CHECK(vt_add(&t, 30, 95) == VMS_EEXISTS);
	CHECK(vt_add(&t, 100, 0) == VMS_EEXISTS);
	CHECK(vms_error_last()[0] != '\0');
	CHECK(unchanged(&t, s));
	CHECK(vt_check(&t) == 0);
	vt_free(&t);
}

TEST(vtree_remove)
{
	vtree t;
	build_forest(&t);
	saved s = save(&t);
	CHECK(vt_remove(&t, 90) == VMS_EDEPEND);        /* has children */
	CHECK(vt_remove(&t, 100) == VMS_EDEPEND);
	CHECK(vt_remove(&t, 95) == VMS_EDEPEND);
	CHECK(vt_remove(&t, 85) == VMS_ENOTFOUND);
	CHECK(vt_remove(&t, 0) == VMS_ENOTFOUND);
	CHECK(unchanged(&t, s));

	CHECK_OK(vt_remove(&t, 50));
	CHECK(vt_find(&t, 50) == NULL && nchildren_of(&t, 80) == 0);
	CHECK_OK(vt_remove(&t, 80));
	CHECK(nchildren_of(&t, 90) == 1);
	CHECK_OK(vt_remove(&t, 30));                   /* a root alone */
	CHECK(vt_remove(&t, 30) == VMS_ENOTFOUND);
	CHECK(vt_count(&t) == 6);
	CHECK(vt_check(&t) == 0);
	/* an id removed may be added again, elsewhere */
	CHECK_OK(vt_add(&t, 80, 95));
	CHECK(parent_of(&t, 80) == 95 && nchildren_of(&t, 95) == 2);
	CHECK(vt_check(&t) == 0);
	/* remove everything, leaves first */
	uint32_t order[] = {80, 40, 95, 70, 90, 60, 100};
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		CHECK_OK(vt_remove(&t, order[i]));
	CHECK(vt_count(&t) == 0);
	CHECK(vt_check(&t) == 0);
	vt_free(&t);
}

/* Removing a leaf keeps the numbers valid: no renumbering, right answers. */
TEST(vtree_remove_keeps_numbers)
{
	vtree t;
	uint32_t ids[] = {100, 95, 90, 80, 70, 60, 50, 40, 30, 7};
	build_forest(&t);
	CHECK(vt_is_ancestor(&t, 100, 50) == 1);       /* renumbers */
	CHECK(!t.stale);
	CHECK_OK(vt_remove(&t, 70));
	CHECK_OK(vt_remove(&t, 60));
	CHECK_OK(vt_remove(&t, 40));
	CHECK(!t.stale);
	CHECK(all_pairs_agree(&t, ids, sizeof(ids) / sizeof(ids[0])));
	CHECK(!t.stale);
	CHECK(vt_is_ancestor(&t, 90, 70) == 0);        /* gone */
	vt_free(&t);
}

TEST(vtree_array_grows_and_shrinks)
{
	vtree t;
	vt_init(&t);
	for (uint32_t i = 5000; i >= 1; i--)
		CHECK_OK(vt_add(&t, i, i % 3 && i < 5000 ? i + 1 : 0));
	CHECK(vt_count(&t) == 5000 && t.cap >= 5000);
	size_t big = t.cap;
	CHECK(vt_check(&t) == 0);
	for (uint32_t i = 1; i <= 4990; i++)           /* the newest (a leaf) first */
		CHECK_OK(vt_remove(&t, i));
	CHECK(vt_count(&t) == 10);
	CHECK(t.cap < big / 8 && t.cap >= t.n);
	CHECK(vt_check(&t) == 0);
	uint32_t ids[10];
	for (uint32_t i = 0; i < 10; i++)
		ids[i] = 4991 + i;
	CHECK(all_pairs_agree(&t, ids, 10));
	CHECK(vt_is_ancestor(&t, 4992, 4991) == 1 && vt_is_ancestor(&t, 4993, 4991) == 0);
	vt_free(&t);
}

TEST(vtree_reparent)
{
	vtree t;
	uint32_t ids[] = {100, 95, 90, 80, 70, 60, 50, 40, 30};
	build_forest(&t);
	CHECK(vt_is_ancestor(&t, 90, 50) == 1);
	/* the merge: 90's children go to its parent 100, then 90 goes */
	CHECK_OK(vt_reparent_children(&t, 90, 100));
	CHECK(t.stale);
	CHECK(nchildren_of(&t, 90) == 0 && nchildren_of(&t, 100) == 4);
	CHECK(parent_of(&t, 80) == 100 && parent_of(&t, 70) == 100 && parent_of(&t, 60) == 100);
	CHECK(vt_check(&t) == 0);
	CHECK(vt_is_ancestor(&t, 90, 50) == 0);
	CHECK(vt_is_ancestor(&t, 100, 50) == 1);
	CHECK(all_pairs_agree(&t, ids, 9));
	CHECK_OK(vt_remove(&t, 90));
	CHECK(vt_check(&t) == 0);

	/* to another root, larger than every child */
	CHECK_OK(vt_reparent_children(&t, 100, 95));
	CHECK(nchildren_of(&t, 95) == 4 && nchildren_of(&t, 100) == 0);
	CHECK(vt_is_ancestor(&t, 95, 50) == 1 && vt_is_ancestor(&t, 100, 50) == 0);
	CHECK(all_pairs_agree(&t, ids, 9));
	CHECK(vt_check(&t) == 0);
	vt_free(&t);
}

TEST(vtree_reparent_rejects)
{
	vtree t;
	build_forest(&t);
	CHECK(vt_is_ancestor(&t, 100, 50) == 1);       /* not stale */
	saved s = save(&t);
	CHECK(vt_reparent_children(&t, 85, 100) == VMS_ENOTFOUND);   /* from missing */
	CHECK(vt_reparent_children(&t, 90, 85) == VMS_ENOTFOUND);    /* to missing */
	CHECK(vt_reparent_children(&t, 90, 0) == VMS_ENOTFOUND);
	CHECK(vt_reparent_children(&t, 60, 0) == VMS_ENOTFOUND);
	CHECK(vt_reparent_children(&t, 90, 80) == VMS_EINVAL);       /* 80 is a child */
	CHECK(vt_reparent_children(&t, 90, 70) == VMS_EINVAL);       /* 80 > 70 */
	CHECK(vt_reparent_children(&t, 90, 50) == VMS_EINVAL);       /* a cycle */
	CHECK(vt_reparent_children(&t, 100, 80) == VMS_EINVAL);      /* 80 is not > 90 */
	CHECK(vt_reparent_children(&t, 95, 30) == VMS_EINVAL);       /* 40 > 30 */
	CHECK(vt_reparent_children(&t, 95, 40) == VMS_EINVAL);
	CHECK(unchanged(&t, s));
	/* no-ops: to == from, or no children */
	s = save(&t);
	CHECK(vt_reparent_children(&t, 90, 90) == 0);
	CHECK(vt_reparent_children(&t, 50, 100) == 0);
	CHECK(vt_reparent_children(&t, 30, 95) == 0);
	CHECK(unchanged(&t, s));
	vt_free(&t);
}

TEST(vtree_children)
{
	vtree t;
	uint32_t out[4] = {0};
	build_forest(&t);
	CHECK(vt_children(&t, 90, out, 4) == 2);
	CHECK(out[0] == 80 && out[1] == 70);            /* largest id first */
	memset(out, 0, sizeof(out));
	CHECK(vt_children(&t, 100, out, 1) == 2);       /* cap smaller than count */
	CHECK(out[0] == 90 && out[1] == 0);
	CHECK(vt_children(&t, 100, NULL, 0) == 2);
	CHECK(vt_children(&t, 95, out, 4) == 1 && out[0] == 40);
	CHECK(vt_children(&t, 50, out, 4) == 0);
	CHECK(vt_children(&t, 30, out, 4) == 0);
	CHECK(vt_children(&t, 31, out, 4) == VMS_ENOTFOUND);
	/* "the only child of P" after a sibling goes */
	CHECK_OK(vt_remove(&t, 70));
	CHECK(vt_children(&t, 90, out, 1) == 1 && out[0] == 80);
	vt_free(&t);
}

TEST(vtree_is_ancestor)
{
	vtree t;
	uint32_t ids[] = {100, 95, 90, 80, 70, 60, 50, 40, 30, 0, 85, UINT32_MAX};
	build_forest(&t);
	CHECK(vt_is_ancestor(&t, 100, 100) == 1);      /* itself */
	CHECK(vt_is_ancestor(&t, 100, 90) == 1);
	CHECK(vt_is_ancestor(&t, 100, 50) == 1);
	CHECK(vt_is_ancestor(&t, 90, 50) == 1);
	CHECK(vt_is_ancestor(&t, 90, 60) == 0);        /* sibling's subtree */
	CHECK(vt_is_ancestor(&t, 80, 70) == 0);        /* siblings */
	CHECK(vt_is_ancestor(&t, 50, 100) == 0);       /* descendant */
	CHECK(vt_is_ancestor(&t, 95, 50) == 0);        /* other root */
	CHECK(vt_is_ancestor(&t, 100, 40) == 0);
	CHECK(vt_is_ancestor(&t, 95, 40) == 1);
	CHECK(vt_is_ancestor(&t, 30, 30) == 1);
	CHECK(vt_is_ancestor(&t, 85, 85) == 0);        /* missing */
	CHECK(vt_is_ancestor(&t, 85, 50) == 0);
	CHECK(vt_is_ancestor(&t, 100, 45) == 0);
	CHECK(vt_is_ancestor(&t, 0, 0) == 0);
	CHECK(vt_is_ancestor(&t, 100, 0) == 0);
	CHECK(all_pairs_agree(&t, ids, sizeof(ids) / sizeof(ids[0])));
	CHECK(!t.stale);
	/* a change makes it stale; the next query renumbers */
	CHECK_OK(vt_add(&t, 45, 50));
	CHECK(t.stale);
	CHECK(vt_is_ancestor(&t, 50, 45) == 1 && !t.stale);
	CHECK(vt_is_ancestor(&t, 90, 45) == 1 && !t.stale);
	CHECK(vt_is_ancestor(&t, 60, 45) == 0);
	/* a < v is answered from the ids alone, without renumbering */
	CHECK_OK(vt_add(&t, 44, 45));
	CHECK(vt_is_ancestor(&t, 44, 100) == 0 && t.stale);
	CHECK(all_pairs_agree(&t, ids, sizeof(ids) / sizeof(ids[0])));
	vt_free(&t);
}

TEST(vtree_check_detects_damage)
{
	vtree t;
	build_forest(&t);
	CHECK(vt_check(&t) == 0);
	t.v[3].nchildren++;
	CHECK(vt_check(&t) == VMS_ECORRUPT);
	t.v[3].nchildren--;
	vt_node x = t.v[2];
	t.v[2] = t.v[3];
	t.v[3] = x;
	CHECK(vt_check(&t) == VMS_ECORRUPT);            /* out of order */
	t.v[3] = t.v[2];
	t.v[2] = x;
	CHECK(vt_check(&t) == 0);
	uint32_t p = t.v[4].parent;
	t.v[4].parent = 99;                             /* missing parent */
	CHECK(vt_check(&t) == VMS_ECORRUPT);
	t.v[4].parent = t.v[4].ver;                     /* itself */
	CHECK(vt_check(&t) == VMS_ECORRUPT);
	t.v[4].parent = p;
	t.v[t.n - 1].ver = 0;
	CHECK(vt_check(&t) == VMS_ECORRUPT);
	vt_free(&t);
}

/* ---- randomized, against a brute-force reference ------------------------- */

#define REF_MAXID 60000u

typedef struct ref {
	uint32_t parent[REF_MAXID + 1]; /* UINT32_MAX: absent */
	uint32_t nch[REF_MAXID + 1];
	uint32_t pos[REF_MAXID + 1];    /* index in ids[] */
	uint32_t ids[REF_MAXID];        /* the existing ids, unordered */
	size_t n;
} ref;

static int ref_has(const ref *r, uint32_t id)
{
	return id != 0 && id <= REF_MAXID && r->parent[id] != UINT32_MAX;
}

static void ref_add(ref *r, uint32_t id, uint32_t parent)
{
	r->parent[id] = parent;
	r->nch[id] = 0;
	if (parent)
		r->nch[parent]++;
	r->pos[id] = (uint32_t)r->n;
	r->ids[r->n++] = id;
}

static void ref_remove(ref *r, uint32_t id)
{
	if (r->parent[id])
		r->nch[r->parent[id]]--;
	r->parent[id] = UINT32_MAX;
	uint32_t last = r->ids[--r->n];
	r->ids[r->pos[id]] = last;
	r->pos[last] = r->pos[id];
}

static int ref_is_ancestor(const ref *r, uint32_t a, uint32_t v)
{
	if (!ref_has(r, a) || !ref_has(r, v))
		return 0;
	for (uint32_t x = v; x != 0; x = r->parent[x])
		if (x == a)
			return 1;
	return 0;
}

/* The whole structure: count, every node's parent and nchildren, invariants. */
static int same_structure(const vtree *t, const ref *r)
{
	if (vt_count(t) != r->n || vt_check(t) != 0)
		return 0;
	for (size_t i = 0; i < r->n; i++) {
		const vt_node *x = vt_find(t, r->ids[i]);
		if (!x || x->parent != r->parent[r->ids[i]] || x->nchildren != r->nch[r->ids[i]])
			return 0;
	}
	return 1;
}

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* The numbers the engine reads (vt_number): after a full renumbering, pre
 * is a preorder (a permutation of 0..n-1, each parent before its
 * children) and [pre, post] spans exactly the node's subtree. */
static int numbered_as_preorder(vtree *t, const ref *r, uint32_t *size)
{
	size_t n = r->n;
	uint32_t *ids = malloc((n + 1) * sizeof(*ids)), *pre = malloc((n + 1) * sizeof(*pre));
	int ok = ids && pre;
	t->stale = 1;
	ok = ok && vt_number(t) == 0 && !t->stale;
	if (ok) {
		memcpy(ids, r->ids, n * sizeof(*ids));
		qsort(ids, n, sizeof(*ids), u32_cmp);   /* children before parents */
		for (size_t i = 0; i < n; i++)
			size[ids[i]] = 1;
		for (size_t i = 0; i < n; i++)
			if (r->parent[ids[i]])
				size[r->parent[ids[i]]] += size[ids[i]];
	}
	for (size_t i = 0; ok && i < n; i++) {
		const vt_node *x = vt_find(t, ids[i]);
		const vt_node *up = x && x->parent ? vt_find(t, x->parent) : NULL;
		ok = x && x->post - x->pre + 1 == size[ids[i]] &&
		     (!x->parent || (up && up->pre < x->pre && x->post <= up->post));
		pre[i] = x ? x->pre : 0;
	}
	if (ok) {
		qsort(pre, n, sizeof(*pre), u32_cmp);
		for (size_t i = 0; ok && i < n; i++)
			ok = pre[i] == i;
	}
	free(ids);
	free(pre);
	return ok;
}

/* Random pairs, half of them (ancestor, descendant) by climbing a random
 * number of steps; all pairs (with a missing id) on small trees. */
static int same_answers(vtree *t, const ref *r, uint64_t *s, uint32_t *bad_a, uint32_t *bad_v)
{
	if (r->n == 0)
		return 1;
	if (r->n <= 24) {
		for (size_t i = 0; i <= r->n; i++)
			for (size_t j = 0; j <= r->n; j++) {
				uint32_t a = i < r->n ? r->ids[i] : REF_MAXID + 5;
				uint32_t v = j < r->n ? r->ids[j] : 0;
				if (vt_is_ancestor(t, a, v) != ref_is_ancestor(r, a, v)) {
					*bad_a = a, *bad_v = v;
					return 0;
				}
			}
		return 1;
	}
	for (int k = 0; k < 24; k++) {
		uint32_t v = r->ids[rnd(s) % r->n], a;
		if (k % 2) {
			a = v;
			for (uint64_t up = rnd(s) % 64; up > 0 && r->parent[a] != 0; up--)
				a = r->parent[a];
		} else {
			a = r->ids[rnd(s) % r->n];
		}
		if (vt_is_ancestor(t, a, v) != ref_is_ancestor(r, a, v)) {
			*bad_a = a, *bad_v = v;
			return 0;
		}
	}
	return 1;
}

enum shape { LINEAR, BRANCHY, DEEP, SHAPES };
static const char *shape_name[] = {"linear", "branchy", "deep"};

/* A parent for a new version `id` under the round's shape (0: a root). */
static uint32_t pick_parent(const ref *r, uint64_t *s, enum shape shape, uint32_t id, uint32_t tip)
{
	if (r->n == 0 || rnd(s) % 50 == 0)
		return 0;
	if ((shape == LINEAR || (shape == DEEP && rnd(s) % 10)) && ref_has(r, tip) && tip > id)
		return tip;
	for (int tries = 0; tries < 8; tries++) {
		uint32_t p = r->ids[rnd(s) % r->n];
		if (p > id)
			return p;
	}
	return 0;
}

/* One round of random operations on a fresh tree; 0 on a mismatch, with
 * *what saying which. */
static int random_round(ref *r, uint64_t *s, enum shape shape, size_t max_n, int nops,
                        const char **what, uint32_t *x1, uint32_t *x2, uint32_t *size)
{
	vtree t;
	int ok = 1;
	uint32_t next = REF_MAXID - (uint32_t)(rnd(s) % 1000), tip = 0;

	vt_init(&t);
	for (int op = 0; op < nops && ok; op++) {
		uint64_t dice = rnd(s) % 100;
		*x1 = *x2 = 0;
		if (dice < 55 && r->n < max_n) {
			/* add: mostly the next id downwards, sometimes any free id */
			uint32_t id = next > 1 && rnd(s) % 5 ? --next : 1 + (uint32_t)(rnd(s) % REF_MAXID);
			if (ref_has(r, id))
				continue;
			uint32_t p = pick_parent(r, s, shape, id, tip);
			*what = "add", *x1 = id, *x2 = p;
			if (vt_add(&t, id, p) != 0) {
				ok = 0;
				break;
			}
			ref_add(r, id, p);
			if (p == tip || p == 0 || id < tip)
				tip = id;
		} else if (dice < 80 && r->n) {
			/* remove: a leaf succeeds, anything else is refused */
			uint32_t id = r->ids[rnd(s) % r->n];
			*what = "remove", *x1 = id;
			if (r->nch[id]) {
				saved sv = save(&t);
				ok = vt_remove(&t, id) == VMS_EDEPEND && unchanged(&t, sv);
			} else {
				ok = vt_remove(&t, id) == 0;
				if (id == tip)
					tip = r->parent[id];
				ref_remove(r, id);
			}
		} else if (dice < 92 && r->n) {
			/* reparent: mostly the merge (children to the parent, then
			 * the version goes), sometimes to any version */
			uint32_t from = r->ids[rnd(s) % r->n], to = r->parent[from];
			int merge = to != 0 && rnd(s) % 3;
			if (!merge)
				to = r->ids[rnd(s) % r->n];
			*what = "reparent", *x1 = from, *x2 = to;
			uint32_t maxchild = 0;
			for (size_t i = 0; i < r->n; i++)
				if (r->parent[r->ids[i]] == from && r->ids[i] > maxchild)
					maxchild = r->ids[i];
			if (maxchild && from != to && maxchild >= to) {
				saved sv = save(&t);
				ok = vt_reparent_children(&t, from, to) == VMS_EINVAL && unchanged(&t, sv);
				continue;
			}
			if (vt_reparent_children(&t, from, to) != 0) {
				ok = 0;
				break;
			}
			if (from != to) {
				for (size_t i = 0; i < r->n; i++)
					if (r->parent[r->ids[i]] == from)
						r->parent[r->ids[i]] = to;
				r->nch[to] += r->nch[from];
				r->nch[from] = 0;
			}
			if (merge) {
				if (from == tip)
					tip = to;
				ok = vt_remove(&t, from) == 0;
				ref_remove(r, from);
			}
		} else {
			/* a call that must be refused, leaving the tree as it was */
			uint32_t id = r->n ? r->ids[rnd(s) % r->n] : 7, missing;
			do
				missing = 1 + (uint32_t)(rnd(s) % (REF_MAXID + 100));
			while (ref_has(r, missing));
			saved sv = save(&t);
			int rc, want;
			switch (rnd(s) % 5) {
			case 0:
				*what = "add duplicate", *x1 = id;
				rc = vt_add(&t, id, 0), want = r->n ? VMS_EEXISTS : 0;
				break;
			case 1:
				*what = "add under missing parent", *x1 = missing, *x2 = missing + 1;
				rc = vt_add(&t, missing, missing + 1), want = VMS_ENOTFOUND;
				if (ref_has(r, missing + 1))
					want = 0;
				break;
			case 2:
				*what = "add under smaller parent", *x1 = missing, *x2 = id;
				rc = vt_add(&t, missing, id);
				want = id <= missing ? VMS_EINVAL : ref_has(r, id) ? 0 : VMS_ENOTFOUND;
				break;
			case 3:
				*what = "remove missing", *x1 = missing;
				rc = vt_remove(&t, missing), want = VMS_ENOTFOUND;
				break;
			default:
				*what = "reparent to missing", *x1 = id, *x2 = missing;
				rc = vt_reparent_children(&t, id, missing), want = VMS_ENOTFOUND;
				break;
			}
			if (want == 0) {         /* the dice made it a valid call: undo */
				free(sv.v);
				if (rc == 0)
					vt_remove(&t, *x1);
				ok = rc == 0 && vt_check(&t) == 0;
				continue;
			}
			ok = rc == want && unchanged(&t, sv);
		}
		if (ok && (op % 8 == 0 || r->n <= 24)) {
			*what = "ancestor";
			ok = same_answers(&t, r, s, x1, x2);
		}
		if (ok && op % 64 == 0) {
			*what = "structure";
			ok = same_structure(&t, r);
		}
		if (ok && op % 256 == 0) {
			*what = "numbers";
			ok = numbered_as_preorder(&t, r, size);
		}
	}
	if (ok) {
		*what = "final structure";
		ok = same_structure(&t, r) && same_answers(&t, r, s, x1, x2) &&
		     numbered_as_preorder(&t, r, size);
	}
	vt_free(&t);
	while (r->n)
		ref_remove(r, r->ids[r->n - 1]);
	return ok;
}

TEST(vtree_random_against_reference)
{
	const char *env = getenv("VMS_SEED");
	uint64_t seed = env && *env ? strtoull(env, NULL, 0)
	                            : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
	fprintf(stderr, "  vtree_random_against_reference: seed %llu (VMS_SEED=%llu to replay)\n",
	        (unsigned long long)seed, (unsigned long long)seed);
	ref *r = malloc(sizeof(*r));
	uint32_t *size = malloc((REF_MAXID + 1) * sizeof(*size));
	REQUIRE(r && size);
	memset(r->parent, 0xff, sizeof(r->parent));
	r->n = 0;
	uint64_t s = seed;
	double t0 = now_ns();
	int rounds = 0;
	for (; rounds < 1000; rounds++) {
		enum shape shape = (enum shape)(rnd(&s) % SHAPES);
		int small = rnd(&s) % 2;
		size_t max_n = small ? 4 + rnd(&s) % 20 : 100 + rnd(&s) % 2000;
		int nops = small ? 200 : 1000 + (int)(rnd(&s) % 3000);
		const char *what = "";
		uint32_t x1 = 0, x2 = 0;
		if (!random_round(r, &s, shape, max_n, nops, &what, &x1, &x2, size)) {
			fprintf(stderr, "  seed %llu round %d (%s, up to %zu versions): %s %u %u wrong: %s\n",
			        (unsigned long long)seed, rounds, shape_name[shape], max_n, what, x1, x2,
			        vms_error_last());
			CHECK(0);
			break;
		}
		if (now_ns() - t0 > 1e9)         /* ~1 s whatever the build */
			break;
	}
	fprintf(stderr, "  %d rounds in %.2f s\n", rounds, (now_ns() - t0) / 1e9);
	CHECK(rounds >= 1);
	free(r);
	free(size);
}

/* ---- deep histories ------------------------------------------------------- */

/* A linear history of 100,000 versions (ids 200,000, 199,998, ... 2, each
 * the child of the one before), each interior with a snapshot leaf (odd id,
 * ids 2k+1 under 2k+2) for half of them: no recursion anywhere. */
TEST(vtree_deep_linear_history)
{
	enum { N = 100000 };
	vtree t;
	uint64_t s = 12345;
	vt_init(&t);
	for (uint32_t k = N; k >= 1; k--) {
		CHECK_OK(vt_add(&t, 2 * k, k == N ? 0 : 2 * k + 2));
		if (k % 2 == 0 && k < N)
			CHECK_OK(vt_add(&t, 2 * k + 1, 2 * k + 2));
	}
	CHECK(vt_count(&t) == N + N / 2 - 1);
	CHECK(vt_check(&t) == 0);
	CHECK(vt_is_ancestor(&t, 2 * N, 2) == 1);
	CHECK(vt_is_ancestor(&t, 2, 2 * N) == 0);
	CHECK(vt_is_ancestor(&t, 2 * N, 5) == 1);
	CHECK(vt_find(&t, 3) == NULL);
	CHECK(vt_is_ancestor(&t, 5, 2) == 0);
	int bad = 0;
	for (int q = 0; q < 200000; q++) {
		uint32_t a = 2 + (uint32_t)(rnd(&s) % (2 * N - 1)), v = 2 + (uint32_t)(rnd(&s) % (2 * N - 1));
		int want;
		if (!vt_find(&t, a) || !vt_find(&t, v))
			want = 0;
		else if (a == v)
			want = 1;
		else if (a % 2)                  /* a snapshot leaf */
			want = 0;
		else
			want = v % 2 ? a >= v + 1 : a > v;
		bad += vt_is_ancestor(&t, a, v) != want;
	}
	CHECK(bad == 0);
	/* merges deep in the chain: 100,000's children go to 100,002 */
	CHECK_OK(vt_reparent_children(&t, N, N + 2));
	CHECK_OK(vt_remove(&t, N));
	CHECK(vt_children(&t, N + 2, NULL, 0) == 2);    /* its leaf N + 1, and N - 2 */
	CHECK(vt_is_ancestor(&t, N + 2, 2) == 1);
	CHECK(vt_is_ancestor(&t, N + 2, N - 2) == 1);
	CHECK(vt_is_ancestor(&t, N + 1, N - 2) == 0);
	CHECK(vt_check(&t) == 0);
	/* delete the newest half, leaves first */
	for (uint32_t k = 1; k <= N / 2; k++) {
		if (vt_find(&t, 2 * k + 1))
			CHECK_OK(vt_remove(&t, 2 * k + 1));
		if (2 * k != N)              /* merged away above */
			CHECK_OK(vt_remove(&t, 2 * k));
	}
	CHECK(vt_check(&t) == 0);
	CHECK(vt_is_ancestor(&t, 2 * N, N + 2) == 1);
	CHECK(vt_is_ancestor(&t, 2 * N, N) == 0);
	vt_free(&t);
}

/* ---- timings (printed; the bounds are loose, for sanitizer builds) -------- */

/* 10,000 snapshots of one volume: each turns the live version into an
 * interior with two children (the snapshot and the new live version), so
 * 20,001 versions.  Then more snapshots, timed; a renumbering; queries. */
TEST(vtree_timing_20000)
{
	vtree t;
	uint32_t id = 4000000000u, live = id--;
	uint64_t s = 99;
	vt_init(&t);
	CHECK_OK(vt_add(&t, live, 0));
	for (int i = 0; i < 10000; i++) {
		uint32_t snap = id--, nl = id--;
		CHECK_OK(vt_add(&t, snap, live));
		CHECK_OK(vt_add(&t, nl, live));
		live = nl;
	}
	REQUIRE(vt_count(&t) == 20001);
	CHECK(vt_check(&t) == 0);            /* touch it all once: first-touch costs aside */
	CHECK_OK(vt_number(&t));

	enum { K = 1000 };
	double worst = 0, t0 = now_ns();
	for (int i = 0; i < K; i++) {
		uint32_t snap = id--, nl = id--;
		double a = now_ns();
		CHECK_OK(vt_add(&t, snap, live));
		CHECK_OK(vt_add(&t, nl, live));
		double b = now_ns() - a;
		worst = b > worst ? b : worst;
		live = nl;
	}
	double add_ns = (now_ns() - t0) / (2 * K);

	/* the worst place for an add: an id above all, at the array's start */
	t0 = now_ns();
	for (uint32_t i = 0; i < 100; i++)
		CHECK_OK(vt_add(&t, 4000000001u + i, 0));
	double front_ns = (now_ns() - t0) / 100;

	/* the first query after a snapshot renumbers */
	double renumber_ns = 0;
	for (int i = 0; i < 20; i++) {
		uint32_t snap = id--, nl = id--;
		CHECK_OK(vt_add(&t, snap, live));
		CHECK_OK(vt_add(&t, nl, live));
		live = nl;
		t0 = now_ns();
		CHECK(vt_is_ancestor(&t, 4000000000u, live) == 1);
		renumber_ns += (now_ns() - t0) / 20;
	}

	enum { Q = 1000000 };
	uint32_t lo = id + 1, span = 4000000000u - lo + 1;
	int yes = 0;
	t0 = now_ns();
	for (int q = 0; q < Q; q++) {
		uint32_t a = lo + (uint32_t)(rnd(&s) % span), v = lo + (uint32_t)(rnd(&s) % span);
		if (a < v) {
			uint32_t x = a;
			a = v, v = x;
		}
		yes += vt_is_ancestor(&t, a, v);
	}
	double query_ns = (now_ns() - t0) / Q;
	CHECK(yes > 0);

	fprintf(stderr,
	        "  %zu versions: vt_add %.0f ns (worst snapshot pair %.1f us),"
	        " at the array's start %.1f us; first query after a snapshot (renumbers) %.0f us; vt_is_ancestor %.0f ns\n",
	        vt_count(&t), add_ns, worst / 1e3, front_ns / 1e3, renumber_ns / 1e3, query_ns);
	CHECK(add_ns < 100e3);
	CHECK(front_ns < 1e6);
	vt_free(&t);
}

TEST_MAIN()
