/*
 * Metrics: the lock-free counters under concurrent writers, the latency
 * histogram's buckets and estimates on a known workload, and the exact
 * Prometheus text.
 */
#include <math.h>
#include <pthread.h>

#include "test.h"
#include "vmsnap/error.h"
#include "vmsnap/metrics.h"

TEST(buckets)
{
	CHECK(vms_latency_bucket(0) == 0);
	CHECK(vms_latency_bucket(1000) == 0);      /* 1 us */
	CHECK(vms_latency_bucket(1001) == 1);
	CHECK(vms_latency_bucket(2000) == 1);      /* 2 us */
	CHECK(vms_latency_bucket(2001) == 2);
	CHECK(vms_latency_bucket(1000000) == 10);  /* 1000 us <= 1024 */
	CHECK(vms_latency_bucket(1024000) == 10);
	CHECK(vms_latency_bucket(1024001) == 11);
	CHECK(vms_latency_bucket((uint64_t)1000 << 30) == 30);
	CHECK(vms_latency_bucket(((uint64_t)1000 << 30) + 1) == 31);
	CHECK(vms_latency_bucket(UINT64_MAX) == 31);
	CHECK(vms_latency_bucket_le_us(0) == 1 && vms_latency_bucket_le_us(10) == 1024);
	CHECK(vms_latency_bucket_le_us(31) == UINT64_MAX);
}

/* 2 requests of 1.5 us, 90 of 100 us, 10 of 5 ms. */
static void known_workload(vms_io_stats *s)
{
	for (int i = 0; i < 2; i++)
		vms_io_stats_record(s, VMS_IO_READ, 4096, 1500, 0);
	for (int i = 0; i < 90; i++)
		vms_io_stats_record(s, VMS_IO_READ, 4096, 100000, 0);
	for (int i = 0; i < 10; i++)
		vms_io_stats_record(s, VMS_IO_READ, 65536, 5000000, i == 0);
}

TEST(estimates)
{
	vms_io_stats s;
	vms_io_snapshot snap;
	vms_io_stats_init(&s);
	known_workload(&s);
	vms_io_stats_read(&snap, &s);
	const vms_latency_snapshot *h = &snap.latency[VMS_IO_READ];
	CHECK(snap.ops[VMS_IO_READ] == 102 && snap.errors[VMS_IO_READ] == 1);
	CHECK(snap.bytes[VMS_IO_READ] == 92 * 4096 + 9 * 65536);
	CHECK(h->count == 102 && h->bucket[1] == 2 && h->bucket[7] == 90 && h->bucket[13] == 10);
	CHECK(h->sum_ns == 59003000);
	CHECK(fabs(vms_latency_mean_us(h) - 59003.0 / 102) < 1e-9);
	/* rank 51 of 102 lies in (64,128]: 64 + 64 * (51-2)/90 */
	CHECK(fabs(vms_latency_quantile_us(h, 0.5) - (64 + 64 * 49.0 / 90)) < 1e-9);
	/* rank 100.98 lies in (4096,8192]: 4096 + 4096 * (100.98-92)/10 */
	CHECK(fabs(vms_latency_quantile_us(h, 0.99) - (4096 + 4096 * 8.98 / 10)) < 1e-6);
	CHECK(vms_latency_quantile_us(h, 0.0) == 1.0);
	CHECK(isnan(vms_latency_quantile_us(h, 1.5)));
	CHECK(isnan(vms_latency_mean_us(&snap.latency[VMS_IO_WRITE])));
	CHECK(isnan(vms_latency_quantile_us(&snap.latency[VMS_IO_WRITE], 0.5)));

	/* Open last bucket: its lower bound. */
	vms_io_stats_record(&s, VMS_IO_TRIM, 0, UINT64_C(1) << 50, 0);
	vms_io_stats_read(&snap, &s);
	CHECK(vms_latency_quantile_us(&snap.latency[VMS_IO_TRIM], 0.5) == (double)(1u << 30));
	vms_io_stats_record(&s, (vms_io_op)7, 1, 1, 0);   /* ignored */
}

TEST(delta_add_json)
{
	vms_io_stats s;
	vms_io_snapshot a, b, d, sum;
	vms_io_stats_init(&s);
	vms_io_stats_record(&s, VMS_IO_WRITE, 512, 3000, 0);
	vms_io_stats_read(&a, &s);
	for (int i = 0; i < 10; i++)
		vms_io_stats_record(&s, VMS_IO_WRITE, 4096, 3000, 0);
	vms_io_stats_record(&s, VMS_IO_FLUSH, 0, 900000, 0);
	vms_io_stats_read(&b, &s);
	vms_io_snapshot_delta(&d, &b, &a);
	CHECK(d.ops[VMS_IO_WRITE] == 10 && d.bytes[VMS_IO_WRITE] == 40960);
	CHECK(d.latency[VMS_IO_WRITE].count == 10 && d.latency[VMS_IO_WRITE].bucket[2] == 10);
	vms_io_snapshot_delta(&d, &a, &b);   /* counters went back: zero, not wrapped */
	CHECK(d.ops[VMS_IO_WRITE] == 0 && d.latency[VMS_IO_WRITE].count == 0);
	memset(&sum, 0, sizeof(sum));
	vms_io_snapshot_add(&sum, &a);
	vms_io_snapshot_add(&sum, &b);
	CHECK(sum.ops[VMS_IO_WRITE] == 12 && sum.latency[VMS_IO_WRITE].count == 12);

	vms_io_snapshot_delta(&d, &b, &a);
	vms_json *j = NULL;
	char *txt = NULL;
	CHECK_OK(vms_io_snapshot_to_json(&j, &d, 2.0));
	CHECK_OK(vms_json_serialize(&txt, j, 0));
	REQUIRE(txt);
	CHECK(strstr(txt, "\"write\":{\"ops\":10,\"bytes\":40960,\"errors\":0,\"latency_us\":{"
	                  "\"mean\":3,\"p50\":3,\"p99\":3.98,\"max_bucket_le\":4},"
	                  "\"ops_per_second\":5,\"bytes_per_second\":20480}") != NULL);
	CHECK(strstr(txt, "\"read\":{\"ops\":0,\"bytes\":0,\"errors\":0,\"latency_us\":{\"mean\":null,"
	                  "\"p50\":null,\"p99\":null,\"max_bucket_le\":null}") != NULL);
	if (!strstr(txt, "\"p99\":3.98"))
		fprintf(stderr, "  %s\n", txt);
	free(txt);
	vms_json_free(j);
}

struct worker { vms_io_stats *s; int id; };

static void *hammer(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 200000; i++)
		vms_io_stats_record(w->s, (vms_io_op)(i % VMS_IO_OPS), 512, (uint64_t)(i % 5000) * 1000,
		                    i % 1000 == 0);
	return NULL;
}

TEST(concurrent_writers)
{
	enum { THREADS = 4 };
	static vms_io_stats s;
	pthread_t t[THREADS];
	struct worker w[THREADS];
	vms_io_snapshot snap;
	vms_io_stats_init(&s);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){&s, i};
		REQUIRE(pthread_create(&t[i], NULL, hammer, &w[i]) == 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	vms_io_stats_read(&snap, &s);
	uint64_t ops = 0, errors = 0, count = 0, bytes = 0;
	for (int op = 0; op < VMS_IO_OPS; op++) {
		ops += snap.ops[op];
		errors += snap.errors[op];
		bytes += snap.bytes[op];
		count += snap.latency[op].count;
	}
	CHECK(ops == THREADS * 200000ull && count == ops);
	CHECK(errors == THREADS * 200ull);
	CHECK(bytes == (ops - errors) * 512);
	/* sum of (i % 5000) * 1000 over 200000 i = 40 * sum(0..4999) * 1000 */
	uint64_t sum = 0;
	for (int op = 0; op < VMS_IO_OPS; op++)
		sum += snap.latency[op].sum_ns;
	CHECK(sum == THREADS * 40ull * (4999ull * 5000 / 2) * 1000);
}

static int text_is(vms_prom *p, const char *want)
{
	const char *got = vms_prom_text(p, NULL);
	if (strcmp(got, want)) {
		fprintf(stderr, "  got:\n%s  want:\n%s", got, want);
		return 0;
	}
	return 1;
}

TEST(prometheus_counters_and_escaping)
{
	vms_prom *p = NULL;
	CHECK_OK(vms_prom_new(&p));
	REQUIRE(p);
	vms_prom_label l[] = {{"vm", "web \"prod\"\\1\nx"}, {"disk", "d0"}};
	CHECK_OK(vms_prom_family(p, "vmsnap_sr_free_bytes", "gauge", "Free bytes\\space\nof an SR."));
	CHECK_OK(vms_prom_sample_u64(p, l, 2, 1234567));
	CHECK_OK(vms_prom_sample_double(p, NULL, 0, 0.1));
	CHECK_OK(vms_prom_sample_double(p, l + 1, 1, INFINITY));
	CHECK_OK(vms_prom_sample_double(p, l + 1, 1, NAN));
	CHECK_OK(vms_prom_sample_double(p, l + 1, 1, -2.5e-7));
	CHECK_OK(vms_prom_family(p, "up", "untyped", ""));
	CHECK_OK(vms_prom_sample_u64(p, NULL, 0, 1));
	CHECK(text_is(p,
		"# HELP vmsnap_sr_free_bytes Free bytes\\\\space\\nof an SR.\n"
		"# TYPE vmsnap_sr_free_bytes gauge\n"
		"vmsnap_sr_free_bytes{vm=\"web \\\"prod\\\"\\\\1\\nx\",disk=\"d0\"} 1234567\n"
		"vmsnap_sr_free_bytes 0.1\n"
		"vmsnap_sr_free_bytes{disk=\"d0\"} +Inf\n"
		"vmsnap_sr_free_bytes{disk=\"d0\"} NaN\n"
		"vmsnap_sr_free_bytes{disk=\"d0\"} -2.5e-07\n"
		"# HELP up \n"
		"# TYPE up untyped\n"
		"up 1\n"));

	/* Refusals leave the text as it was. */
	size_t before;
	vms_prom_text(p, &before);
	vms_prom_label bad1[] = {{"__name", "x"}}, bad2[] = {{"9vm", "x"}}, bad3[] = {{"a", "1"}, {"a", "2"}};
	CHECK(vms_prom_family(p, "up", "gauge", "again") == VMS_EINVAL);
	CHECK(vms_prom_family(p, "bad-name", "gauge", "") == VMS_EINVAL);
	CHECK(vms_prom_family(p, "ok_name", "summary", "") == VMS_EINVAL);
	CHECK(vms_prom_sample_u64(p, bad1, 1, 1) == VMS_EINVAL);
	CHECK(vms_prom_sample_u64(p, bad2, 1, 1) == VMS_EINVAL);
	CHECK(vms_prom_sample_u64(p, bad3, 2, 1) == VMS_EINVAL);
	vms_latency_snapshot h;
	memset(&h, 0, sizeof(h));
	CHECK(vms_prom_histogram(p, NULL, 0, &h) == VMS_EINVAL);   /* "up" is untyped */
	size_t after;
	vms_prom_text(p, &after);
	CHECK(before == after);
	vms_prom_free(p);

	CHECK_OK(vms_prom_new(&p));
	CHECK(vms_prom_sample_u64(p, NULL, 0, 1) == VMS_EINVAL);   /* no family yet */
	vms_prom_free(p);
}

TEST(prometheus_histogram_exact)
{
	vms_io_stats s;
	vms_io_snapshot snap;
	vms_prom *p = NULL;
	vms_io_stats_init(&s);
	known_workload(&s);
	vms_io_stats_read(&snap, &s);
	CHECK_OK(vms_prom_new(&p));
	REQUIRE(p);
	CHECK_OK(vms_prom_family(p, "lat", "histogram", "Latency."));
	vms_prom_label l[] = {{"op", "read"}}, le[] = {{"le", "1"}};
	CHECK(vms_prom_histogram(p, le, 1, &snap.latency[VMS_IO_READ]) == VMS_EINVAL);
	CHECK(vms_prom_sample_u64(p, l, 1, 3) == VMS_EINVAL);   /* not a plain sample family */
	CHECK_OK(vms_prom_histogram(p, l, 1, &snap.latency[VMS_IO_READ]));
	CHECK(text_is(p,
		"# HELP lat Latency.\n"
		"# TYPE lat histogram\n"
		"lat_bucket{op=\"read\",le=\"0.000001\"} 0\n"
		"lat_bucket{op=\"read\",le=\"0.000002\"} 2\n"
		"lat_bucket{op=\"read\",le=\"0.000004\"} 2\n"
		"lat_bucket{op=\"read\",le=\"0.000008\"} 2\n"
		"lat_bucket{op=\"read\",le=\"0.000016\"} 2\n"
		"lat_bucket{op=\"read\",le=\"0.000032\"} 2\n"
		"lat_bucket{op=\"read\",le=\"0.000064\"} 2\n"
		"lat_bucket{op=\"read\",le=\"0.000128\"} 92\n"
		"lat_bucket{op=\"read\",le=\"0.000256\"} 92\n"
		"lat_bucket{op=\"read\",le=\"0.000512\"} 92\n"
		"lat_bucket{op=\"read\",le=\"0.001024\"} 92\n"
		"lat_bucket{op=\"read\",le=\"0.002048\"} 92\n"
		"lat_bucket{op=\"read\",le=\"0.004096\"} 92\n"
		"lat_bucket{op=\"read\",le=\"0.008192\"} 102\n"
		"lat_bucket{op=\"read\",le=\"0.016384\"} 102\n"
		"lat_bucket{op=\"read\",le=\"0.032768\"} 102\n"
		"lat_bucket{op=\"read\",le=\"0.065536\"} 102\n"
		"lat_bucket{op=\"read\",le=\"0.131072\"} 102\n"
		"lat_bucket{op=\"read\",le=\"0.262144\"} 102\n"
		"lat_bucket{op=\"read\",le=\"0.524288\"} 102\n"
		"lat_bucket{op=\"read\",le=\"1.048576\"} 102\n"
		"lat_bucket{op=\"read\",le=\"2.097152\"} 102\n"
		"lat_bucket{op=\"read\",le=\"4.194304\"} 102\n"
		"lat_bucket{op=\"read\",le=\"8.388608\"} 102\n"
		"lat_bucket{op=\"read\",le=\"16.777216\"} 102\n"
		"lat_bucket{op=\"read\",le=\"33.554432\"} 102\n"
		"lat_bucket{op=\"read\",le=\"67.108864\"} 102\n"
		"lat_bucket{op=\"read\",le=\"134.217728\"} 102\n"
		"lat_bucket{op=\"read\",le=\"268.435456\"} 102\n"
		"lat_bucket{op=\"read\",le=\"536.870912\"} 102\n"
		"lat_bucket{op=\"read\",le=\"1073.741824\"} 102\n"
		"lat_bucket{op=\"read\",le=\"+Inf\"} 102\n"
		"lat_sum{op=\"read\"} 0.059003\n"
		"lat_count{op=\"read\"} 102\n"));
	vms_prom_free(p);
}

TEST(prometheus_disks)
{
	vms_io_stats s1, s2;
	vms_io_snapshot a, b;
	vms_prom *p = NULL;
	vms_io_stats_init(&s1);
	vms_io_stats_init(&s2);
	vms_io_stats_record(&s1, VMS_IO_READ, 4096, 1500, 0);
	vms_io_stats_record(&s2, VMS_IO_WRITE, 8192, 70000, 1);
	vms_io_stats_record(&s2, VMS_IO_TRIM, 1 << 20, 70000, 0);
	vms_io_stats_read(&a, &s1);
	vms_io_stats_read(&b, &s2);
	vms_prom_label la[] = {{"vm", "vm1"}, {"disk", "d0"}}, lb[] = {{"vm", "vm1"}, {"disk", "d1"}};
	vms_prom_disk disks[] = {{la, 2, &a}, {lb, 2, &b}};
	CHECK_OK(vms_prom_new(&p));
	REQUIRE(p);
	CHECK_OK(vms_prom_io_disks(p, disks, 2));
	const char *t = vms_prom_text(p, NULL);
	const char *counters =
		"# HELP vmsnap_disk_requests_total Requests completed on a disk export, failed ones included.\n"
		"# TYPE vmsnap_disk_requests_total counter\n"
		"vmsnap_disk_requests_total{vm=\"vm1\",disk=\"d0\",op=\"read\"} 1\n"
		"vmsnap_disk_requests_total{vm=\"vm1\",disk=\"d0\",op=\"write\"} 0\n"
		"vmsnap_disk_requests_total{vm=\"vm1\",disk=\"d0\",op=\"flush\"} 0\n"
		"vmsnap_disk_requests_total{vm=\"vm1\",disk=\"d0\",op=\"trim\"} 0\n"
		"vmsnap_disk_requests_total{vm=\"vm1\",disk=\"d1\",op=\"read\"} 0\n"
		"vmsnap_disk_requests_total{vm=\"vm1\",disk=\"d1\",op=\"write\"} 1\n"
		"vmsnap_disk_requests_total{vm=\"vm1\",disk=\"d1\",op=\"flush\"} 0\n"
		"vmsnap_disk_requests_total{vm=\"vm1\",disk=\"d1\",op=\"trim\"} 1\n"
		"# HELP vmsnap_disk_bytes_total Bytes read, written or trimmed by successful requests.\n"
		"# TYPE vmsnap_disk_bytes_total counter\n"
		"vmsnap_disk_bytes_total{vm=\"vm1\",disk=\"d0\",op=\"read\"} 4096\n"
		"vmsnap_disk_bytes_total{vm=\"vm1\",disk=\"d0\",op=\"write\"} 0\n"
		"vmsnap_disk_bytes_total{vm=\"vm1\",disk=\"d0\",op=\"trim\"} 0\n"
		"vmsnap_disk_bytes_total{vm=\"vm1\",disk=\"d1\",op=\"read\"} 0\n"
		"vmsnap_disk_bytes_total{vm=\"vm1\",disk=\"d1\",op=\"write\"} 0\n"
		"vmsnap_disk_bytes_total{vm=\"vm1\",disk=\"d1\",op=\"trim\"} 1048576\n"
		"# HELP vmsnap_disk_errors_total Requests that failed.\n"
		"# TYPE vmsnap_disk_errors_total counter\n"
		"vmsnap_disk_errors_total{vm=\"vm1\",disk=\"d0\",op=\"read\"} 0\n";
	CHECK(!strncmp(t, counters, strlen(counters)));
	/* The rest: the structure line by line, and sample lines exactly. */
	int help = 0, type = 0, bucket = 0, sums = 0, counts = 0;
	for (const char *l = t; *l;) {
		const char *nl = strchr(l, '\n');
		REQUIRE(nl);
		if (!strncmp(l, "# HELP ", 7))
			help++;
		else if (!strncmp(l, "# TYPE ", 7))
			type++;
		else if (!strncmp(l, "vmsnap_disk_request_duration_seconds_bucket{", 44))
			bucket++;
		else if (!strncmp(l, "vmsnap_disk_request_duration_seconds_sum{", 41))
			sums++;
		else if (!strncmp(l, "vmsnap_disk_request_duration_seconds_count{", 43))
			counts++;
		l = nl + 1;
	}
	CHECK(help == 4 && type == 4);
	CHECK(bucket == 2 * 4 * VMS_LAT_BUCKETS && sums == 8 && counts == 8);
	CHECK(strstr(t, "vmsnap_disk_request_duration_seconds_bucket{vm=\"vm1\",disk=\"d1\",op=\"write\","
	                "le=\"0.000064\"} 0\n"
	                "vmsnap_disk_request_duration_seconds_bucket{vm=\"vm1\",disk=\"d1\",op=\"write\","
	                "le=\"0.000128\"} 1\n") != NULL);
	CHECK(strstr(t, "vmsnap_disk_request_duration_seconds_sum{vm=\"vm1\",disk=\"d1\",op=\"write\"} "
	                "0.00007\n"
	                "vmsnap_disk_request_duration_seconds_count{vm=\"vm1\",disk=\"d1\",op=\"write\"} 1\n")
	      != NULL);
	CHECK(strstr(t, "vmsnap_disk_errors_total{vm=\"vm1\",disk=\"d1\",op=\"write\"} 1\n") != NULL);
	vms_prom_free(p);
}

TEST_MAIN()
