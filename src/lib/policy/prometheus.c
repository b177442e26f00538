/*
 * Prometheus text exposition format (version 0.0.4).
 *
 * The builder enforces what scrapers rely on: metric and label names
 * match the allowed patterns, each family appears once with its HELP and
 * TYPE lines before its samples, label values and help text are escaped
 * (label values: backslash, double quote, line feed; help: backslash and
 * line feed), numbers are written so they read back exactly.  Histogram
 * bounds are powers of two in microseconds, written in seconds as exact
 * decimals ("0.000512"), never as binary approximations.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmsnap/error.h"
#include "vmsnap/metrics.h"

struct vms_prom {
	char *buf;
	size_t len, cap;
	char **families;        /* names used so far */
	size_t nfamilies;
	char family[128];       /* current family */
	char type[16];
};

int vms_prom_new(vms_prom **out)
{
	vms_prom *p = calloc(1, sizeof(*p));
	if (!p || !(p->buf = malloc(p->cap = 4096))) {
		free(p);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	p->buf[0] = '\0';
	*out = p;
	return 0;
}

void vms_prom_free(vms_prom *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nfamilies; i++)
		free(p->families[i]);
	free(p->families);
	free(p->buf);
	free(p);
}

const char *vms_prom_text(const vms_prom *p, size_t *len)
{
	if (len)
		*len = p->len;
	return p->buf;
}

static int reserve(vms_prom *p, size_t more)
{
	if (p->len + more + 1 <= p->cap)
		return 0;
	size_t cap = p->cap;
	while (cap < p->len + more + 1)
		cap *= 2;
	char *b = realloc(p->buf, cap);
	if (!b)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	p->buf = b;
	p->cap = cap;
	return 0;
}

static int put(vms_prom *p, const char *s, size_t n)
{
	int rc = reserve(p, n);
	if (rc < 0)
		return rc;
	memcpy(p->buf + p->len, s, n);
	p->len += n;
	p->buf[p->len] = '\0';
	return 0;
}

static int puts_(vms_prom *p, const char *s)
{
	return put(p, s, strlen(s));
}

/* Escape backslash and line feed; with quotes also the double quote. */
static int put_escaped(vms_prom *p, const char *s, int quotes)
{
	int rc = 0;
	for (; *s && rc == 0; s++) {
		if (*s == '\\')
			rc = put(p, "\\\\", 2);
		else if (*s == '\n')
			rc = put(p, "\\n", 2);
		else if (*s == '"' && quotes)
			rc = put(p, "\\\"", 2);
		else
			rc = put(p, s, 1);
	}
	return rc;
}

static int valid_name(const char *s, int colons)
{
	if (!s || !*s)
		return 0;
	for (size_t i = 0; s[i]; i++) {
		char c = s[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		         (colons && c == ':') || (i > 0 && c >= '0' && c <= '9');
		if (!ok)
			return 0;
	}
	return 1;
}

int vms_prom_family(vms_prom *p, const char *name, const char *type, const char *help)
{
	int rc;
	static const char *const types[] = {"counter", "gauge", "histogram", "untyped"};
	size_t t;

	if (!valid_name(name, 1) || strlen(name) >= sizeof(p->family))
		return vms_error_set(VMS_EINVAL, "prometheus: bad metric name '%s'", name ? name : "");
	for (t = 0; t < 4 && strcmp(type ? type : "", types[t]); t++)
		;
	if (t == 4)
		return vms_error_set(VMS_EINVAL, "prometheus: bad metric type '%s'", type ? type : "");
	for (size_t i = 0; i < p->nfamilies; i++)
		if (!strcmp(p->families[i], name))
			return vms_error_set(VMS_EINVAL, "prometheus: metric family '%s' given twice", name);
	char **f = realloc(p->families, (p->nfamilies + 1) * sizeof(*f));
	if (!f)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	p->families = f;
	if (!(f[p->nfamilies] = strdup(name)))
		return vms_error_set(VMS_ENOMEM, "out of memory");
	p->nfamilies++;
	strcpy(p->family, name);
	strcpy(p->type, types[t]);
	if ((rc = puts_(p, "# HELP ")) < 0 || (rc = puts_(p, name)) < 0 || (rc = puts_(p, " ")) < 0 ||
	    (rc = put_escaped(p, help ? help : "", 0)) < 0 || (rc = puts_(p, "\n# TYPE ")) < 0 ||
	    (rc = puts_(p, name)) < 0 || (rc = puts_(p, " ")) < 0 || (rc = puts_(p, types[t])) < 0 ||
	    (rc = puts_(p, "\n")) < 0)
		return rc;
	return 0;
}

/* name{labels[,extra="value"]} */
static int put_series(vms_prom *p, const char *suffix, const vms_prom_label *labels, size_t n,
                      const char *extra, const char *extra_value)
{
	int rc;
	if ((rc = puts_(p, p->family)) < 0 || (rc = puts_(p, suffix)) < 0)
		return rc;
	if (n == 0 && !extra)
		return 0;
	if ((rc = puts_(p, "{")) < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		if ((rc = puts_(p, i ? "," : "")) < 0 || (rc = puts_(p, labels[i].name)) < 0 ||
		    (rc = puts_(p, "=\"")) < 0 ||
		    (rc = put_escaped(p, labels[i].value ? labels[i].value : "", 1)) < 0 ||
		    (rc = puts_(p, "\"")) < 0)
			return rc;
	}
	if (extra && ((rc = puts_(p, n ? "," : "")) < 0 || (rc = puts_(p, extra)) < 0 ||
	              (rc = puts_(p, "=\"")) < 0 || (rc = puts_(p, extra_value)) < 0 ||
	              (rc = puts_(p, "\"")) < 0))
		return rc;
	return puts_(p, "}");
}

static int check_sample(vms_prom *p, const vms_prom_label *labels, size_t n, int histogram)
{
	if (!p->family[0])
		return vms_error_set(VMS_EINVAL, "prometheus: sample before any family");
	if (histogram != !strcmp(p->type, "histogram"))
		return vms_error_set(VMS_EINVAL, "prometheus: family '%s' is a %s", p->family, p->type);
	for (size_t i = 0; i < n; i++) {
		if (!valid_name(labels[i].name, 0) || !strncmp(labels[i].name, "__", 2))
			return vms_error_set(VMS_EINVAL, "prometheus: bad label name '%s'",
			                     labels[i].name ? labels[i].name : "");
		if (histogram && !strcmp(labels[i].name, "le"))
			return vms_error_set(VMS_EINVAL, "prometheus: label 'le' is reserved in histograms");
		for (size_t j = 0; j < i; j++)
			if (!strcmp(labels[i].name, labels[j].name))
				return vms_error_set(VMS_EINVAL, "prometheus: label '%s' given twice",
				                     labels[i].name);
	}
	return 0;
}

/* Shortest text that reads back as the same double; Prometheus spellings
 * of the special values. */
static void format_double(char *out, size_t cap, double v)
{
	if (isnan(v)) {
		snprintf(out, cap, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, cap, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			return;
	}
}

/* v / 10^decimals as an exact decimal, trailing zeros dropped. */
static void format_fixed(char *out, size_t cap, uint64_t v, unsigned decimals)
{
	uint64_t scale = 1;
	for (unsigned i = 0; i < decimals; i++)
		scale *= 10;
	int len = snprintf(out, cap, "%llu.%0*llu", (unsigned long long)(v / scale), (int)decimals,
	                   (unsigned long long)(v % scale));
	while (len > 0 && out[len - 1] == '0')
		out[--len] = '\0';
	if (len > 0 && out[len - 1] == '.')
		out[--len] = '\0';
}

static int put_value_line(vms_prom *p, const char *value)
{
	int rc;
	if ((rc = puts_(p, " ")) < 0 || (rc = puts_(p, value)) < 0)
		return rc;
	return puts_(p, "\n");
}

/* One sample line of the current plain family with an already formatted value. */
static int sample_text(vms_prom *p, const vms_prom_label *labels, size_t nlabels, const char *num)
{
	int rc;
	if ((rc = check_sample(p, labels, nlabels, 0)) < 0 ||
	    (rc = put_series(p, "", labels, nlabels, NULL, NULL)) < 0)
		return rc;
	return put_value_line(p, num);
}

int vms_prom_sample_u64(vms_prom *p, const vms_prom_label *labels, size_t nlabels, uint64_t value)
{
	char num[32];
	snprintf(num, sizeof(num), "%llu", (unsigned long long)value);
	return sample_text(p, labels, nlabels, num);
}

int vms_prom_sample_double(vms_prom *p, const vms_prom_label *labels, size_t nlabels, double value)
{
	char num[40];
	format_double(num, sizeof(num), value);
	return sample_text(p, labels, nlabels, num);
}

int vms_prom_histogram(vms_prom *p, const vms_prom_label *labels, size_t nlabels,
                       const vms_latency_snapshot *h)
{
	char le[32], num[32];
	uint64_t cumulative = 0;
	int rc;

	if ((rc = check_sample(p, labels, nlabels, 1)) < 0)
		return rc;
	for (unsigned i = 0; i < VMS_LAT_BUCKETS; i++) {
		cumulative += h->bucket[i];
		if (i == VMS_LAT_BUCKETS - 1)
			strcpy(le, "+Inf");
		else
			format_fixed(le, sizeof(le), vms_latency_bucket_le_us(i), 6);
		snprintf(num, sizeof(num), "%llu", (unsigned long long)cumulative);
		if ((rc = put_series(p, "_bucket", labels, nlabels, "le", le)) < 0 ||
		    (rc = put_value_line(p, num)) < 0)
			return rc;
	}
	format_fixed(num, sizeof(num), h->sum_ns, 9);
	if ((rc = put_series(p, "_sum", labels, nlabels, NULL, NULL)) < 0 ||
	    (rc = put_value_line(p, num)) < 0)
		return rc;
	snprintf(num, sizeof(num), "%llu", (unsigned long long)cumulative);
	if ((rc = put_series(p, "_count", labels, nlabels, NULL, NULL)) < 0)
		return rc;
	return put_value_line(p, num);
}

/* ---- the standard disk families ------------------------------------------ */

#define MAX_DISK_LABELS 15

static int disk_labels(vms_prom_label *out, const vms_prom_disk *d, int op)
{
	if (d->nlabels > MAX_DISK_LABELS)
		return vms_error_set(VMS_EINVAL, "prometheus: more than %d labels", MAX_DISK_LABELS);
	for (size_t i = 0; i < d->nlabels; i++)
		out[i] = d->labels[i];
	out[d->nlabels] = (vms_prom_label){"op", vms_io_op_name(op)};
	return 0;
}

enum { FIELD_OPS, FIELD_BYTES, FIELD_ERRORS };

static int counter_family(vms_prom *p, const vms_prom_disk *disks, size_t n, const char *name,
                          const char *help, int field)
{
	vms_prom_label l[MAX_DISK_LABELS + 1];
	int rc;
	if ((rc = vms_prom_family(p, name, "counter", help)) < 0)
		return rc;
	for (size_t d = 0; d < n; d++)
		for (int op = 0; op < VMS_IO_OPS; op++) {
			const vms_io_snapshot *io = disks[d].io;
			uint64_t v = field == FIELD_OPS ? io->ops[op] :
			             field == FIELD_BYTES ? io->bytes[op] : io->errors[op];
			if (field == FIELD_BYTES && op == VMS_IO_FLUSH)
				continue;   /* a flush moves no bytes */
			if ((rc = disk_labels(l, &disks[d], op)) < 0 ||
			    (rc = vms_prom_sample_u64(p, l, disks[d].nlabels + 1, v)) < 0)
				return rc;
		}
	return 0;
}

int vms_prom_io_disks(vms_prom *p, const vms_prom_disk *disks, size_t n)
{
	vms_prom_label l[MAX_DISK_LABELS + 1];
	int rc;

	if ((rc = counter_family(p, disks, n, "vmsnap_disk_requests_total",
	                         "Requests completed on a disk export, failed ones included.",
	                         FIELD_OPS)) < 0 ||
	    (rc = counter_family(p, disks, n, "vmsnap_disk_bytes_total",
	                         "Bytes read, written or trimmed by successful requests.",
	                         FIELD_BYTES)) < 0 ||
	    (rc = counter_family(p, disks, n, "vmsnap_disk_errors_total",
	                         "Requests that failed.", FIELD_ERRORS)) < 0)
		return rc;
	if ((rc = vms_prom_family(p, "vmsnap_disk_request_duration_seconds", "histogram",
	                          "Time from request to reply, in log2 buckets.")) < 0)
		return rc;
	for (size_t d = 0; d < n; d++)
		for (int op = 0; op < VMS_IO_OPS; op++)
			if ((rc = disk_labels(l, &disks[d], op)) < 0 ||
			    (rc = vms_prom_histogram(p, l, disks[d].nlabels + 1, &disks[d].io->latency[op])) < 0)
				return rc;
	return 0;
}
