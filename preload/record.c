/* record.c — VDPAD_VHOST_RECORD: every call the VMM's file made, as JSON lines (vdpad-run --record). */
#include "vdpad_vhost.h"

/* ---- recording (VDPAD_VHOST_RECORD) ---------------------------------------- */

/* Every call the VMM's file made, as JSON lines in the spirit of umockdev-record:
 * {"t": seconds since the session opened, "device", "method", "params", "result" | "error": {errno, kernel_errno}}.
 * `vdpad-cli replay` reads them back.  With VDPAD_VHOST_RECORD_ANONYMIZE=1, host addresses (map's addr)
 * are written relative to the first one the session mapped, so a trace shows layout and not the VMM's memory. */
static pthread_mutex_t record_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *record_file;
static int record_state;  /* 0 unknown, 1 recording, -1 not */

static int recording(void)
{
    if (record_state == 0) {
        pthread_mutex_lock(&record_lock);
        if (record_state == 0) {
            const char *path = getenv("VDPAD_VHOST_RECORD");
            record_file = path && *path ? fopen(path, "ae") : NULL;
            if (path && *path && !record_file)
                say("cannot record to %s: %s", path, strerror(errno));
            record_state = record_file ? 1 : -1;
        }
        pthread_mutex_unlock(&record_lock);
    }
    return record_state == 1;
}

HIDDEN void record(struct session *s, const char *method, const char *params, json_object *reply)
{
    if (strcmp(method, "set_store_agent") == 0 || strcmp(method, "share_memory") == 0 || strcmp(method, "unshare_memory") == 0 ||
        !recording())
        return;  /* the library's own plumbing (store agent, shared memory), not a call the VMM made */
    char text[1400];
    const char *addr = strstr(params, "\"addr\":");
    if (addr && getenv("VDPAD_VHOST_RECORD_ANONYMIZE")) {
        unsigned long long value = strtoull(addr + 7, NULL, 10);
        if (!s->record_base)
            s->record_base = value;
        const char *rest = addr + 7;
        while (*rest >= '0' && *rest <= '9')
            rest++;
        snprintf(text, sizeof(text), "%.*s\"addr\":%llu%s", (int)(addr - params), params, value - s->record_base, rest);
        params = text;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double t = (double)(now.tv_sec - s->opened.tv_sec) + (double)(now.tv_nsec - s->opened.tv_nsec) / 1e9;
    json_object *error = member(reply, "error");
    json_object *outcome = error ? member(error, "data") : member(reply, "result");
    pthread_mutex_lock(&record_lock);
    /* t: seconds since the session opened (what replay paces by); mono: CLOCK_MONOTONIC itself, one clock for every
     * process on the host, so two VMMs' records (a migration's source and destination) can be laid side by side. */
    fprintf(record_file, "{\"t\":%.6f,\"mono\":%.6f,\"device\":\"%s\",\"method\":\"%s\",\"params\":{%s},\"%s\":%s}\n", t,
            (double)now.tv_sec + (double)now.tv_nsec / 1e9, s->device, method, params, error ? "error" : "result",
            outcome ? json_object_to_json_string_ext(outcome, JSON_C_TO_STRING_PLAIN) : "null");
    fflush(record_file);
    pthread_mutex_unlock(&record_lock);
}
