/* session.c — sessions and the fd table (a VMM may dup its fd; the session lives while any names it),
 * the configuration (VDPAD_VHOST_DEVICES, VDPAD_SOCKET), and the connection to vdpad. */
#include "vdpad_vhost.h"

/* ---- sessions and the fd table ----------------------------------------- */


static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct session **table;   /* indexed by fd */
static int table_size;

/* Whether each of the low fds names a session, readable without the lock: nearly every call the library sees
 * (a VMM's writes to its eventfds, disks and sockets, its mmaps) is on an fd that names none, and a global
 * mutex per write() would serialize a VMM's threads on it.  Set and cleared under the lock with the table; a
 * reader racing a bind of the same fd is racing its open() too, which no caller can rely on. */
#define QUICK_FDS 4096
static unsigned char named[QUICK_FDS];

/* How many fds name a session: while none does, poll and select pass straight through (any_named). */
static int named_fds;

HIDDEN int any_named(void) { return __atomic_load_n(&named_fds, __ATOMIC_ACQUIRE) > 0; }

/* False when `fd` certainly names no session (checked without the lock). */
static inline int may_name_session(int fd)
{
    return fd >= QUICK_FDS || __atomic_load_n(&named[fd], __ATOMIC_ACQUIRE);
}

/* One past the highest fd the table has room for (close_range walks the fds below it). */
HIDDEN int table_extent(void)
{
    pthread_mutex_lock(&table_lock);
    int top = table_size;
    pthread_mutex_unlock(&table_lock);
    return top;
}

HIDDEN struct session *lookup(int fd)
{
    struct session *s = NULL;
    if (fd < 0 || !may_name_session(fd))
        return NULL;
    pthread_mutex_lock(&table_lock);
    if (fd < table_size)
        s = table[fd];
    pthread_mutex_unlock(&table_lock);
    return s;
}

HIDDEN void session_free(struct session *s)
{
    /* The file's last name here is gone: the kernel releases the device before close() returns
     * (vhost_vdpa_release), so a VMM may open it again at once.  The daemon would see the connection's end a
     * moment later; `close` releases it now.  Only in the process that opened it, and only if it has not forked
     * since: a child may hold the file still, which the kernel keeps open (the daemon reads the connection's
     * end once every copy is closed, and an open meanwhile finds whether its client hung up). */
    if (s->opener && s->opener == getpid() && s->forks_at_open == __atomic_load_n(&forks, __ATOMIC_RELAXED)) {
        /* A close must not hang on a daemon that does not answer (stopped, gone): after a while the connection's
         * end, which the daemon reads later, releases the device all the same. */
        s->reply_wait_ms = 2000;
        int err;
        json_object *r = call(s, "close", -1, &err, "");
        if (r) json_object_put(r);
    }
    real_close(s->sock);  /* the session's own descriptor: the connection ends with the file's last name */
    pthread_mutex_destroy(&s->lock);
    free(s->busyloop);
    free(s->buf);
    free(s->shared_ids);
    free(s);
}

/* The session `fd` names, held for the duration of a call: a close() on another thread meanwhile forgets
 * the fd but frees the session only when this use ends (`release`). */
HIDDEN struct session *acquire(int fd)
{
    struct session *s = NULL;
    if (fd < 0 || !may_name_session(fd))
        return NULL;
    pthread_mutex_lock(&table_lock);
    if (fd < table_size && (s = table[fd]))
        s->refs++;
    pthread_mutex_unlock(&table_lock);
    return s;
}

HIDDEN void release(struct session *s)
{
    pthread_mutex_lock(&table_lock);
    int last = --s->refs == 0;
    pthread_mutex_unlock(&table_lock);
    if (last)
        session_free(s);
}

/* Names `fd` as `s` (s may be NULL to forget it); the session it named before loses a reference. */
HIDDEN void bind_fd(int fd, struct session *s)
{
    struct session *old = NULL;
    if (fd < 0)
        return;
    pthread_mutex_lock(&table_lock);
    if (fd >= table_size && s) {
        int size = table_size ? table_size : 64;
        while (size <= fd)
            size *= 2;
        struct session **grown = realloc(table, sizeof(*table) * size);
        if (!grown) {
            pthread_mutex_unlock(&table_lock);
            return;
        }
        memset(grown + table_size, 0, sizeof(*table) * (size - table_size));
        table = grown;
        table_size = size;
    }
    if (fd < table_size) {
        old = table[fd];
        table[fd] = s;
        __atomic_add_fetch(&named_fds, (s != NULL) - (old != NULL), __ATOMIC_RELEASE);
        if (fd < QUICK_FDS)
            __atomic_store_n(&named[fd], s != NULL, __ATOMIC_RELEASE);
        if (s)
            s->refs++;
        if (old && --old->refs > 0)
            old = NULL;
    }
    pthread_mutex_unlock(&table_lock);
    if (old)
        session_free(old);
}

/* Runs `body` once for each live session, holding it (not the table) meanwhile. */
HIDDEN void for_each_session(void (*body)(struct session *, void *), void *context)
{
    struct session **found = NULL;
    size_t n = 0;
    pthread_mutex_lock(&table_lock);
    for (int fd = 0; fd < table_size; fd++) {
        struct session *s = table[fd];
        int seen = 0;
        for (size_t k = 0; s && k < n && !seen; k++)
            seen = found[k] == s;
        if (!s || seen)
            continue;
        struct session **grown = realloc(found, sizeof(*found) * (n + 1));
        if (!grown)
            break;
        found = grown;
        found[n++] = s;
        s->refs++;
    }
    pthread_mutex_unlock(&table_lock);
    for (size_t k = 0; k < n; k++) {
        body(found[k], context);
        release(found[k]);
    }
    free(found);
}

/* ---- configuration ------------------------------------------------------ */

/* The vdpad device VDPAD_VHOST_DEVICES maps `path` to, copied into `out`; 0 if the path is not ours. */
HIDDEN int mapped_device(const char *path, char *out, size_t out_size)
{
    const char *list = getenv("VDPAD_VHOST_DEVICES");
    size_t path_len;
    if (!list || !path)
        return 0;
    path_len = strlen(path);
    while (*list) {
        const char *end = strchr(list, ',');
        const char *eq = memchr(list, '=', end ? (size_t)(end - list) : strlen(list));
        size_t len = end ? (size_t)(end - list) : strlen(list);
        if (eq && (size_t)(eq - list) == path_len && memcmp(list, path, path_len) == 0) {
            size_t name_len = len - path_len - 1;
            if (name_len == 0 || name_len >= out_size)
                return 0;
            memcpy(out, eq + 1, name_len);
            out[name_len] = 0;
            return 1;
        }
        if (!end)
            break;
        list = end + 1;
    }
    return 0;
}

HIDDEN void say(const char *fmt, ...)
{
    va_list ap;
    if (getenv("VDPAD_VHOST_QUIET"))
        return;
    va_start(ap, fmt);
    fputs("libvdpad-vhost: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Connects to vdpad as vdpad-cli does (DefaultSocketPath): VDPAD_SOCKET, else the system socket, then a
 * per-user daemon's.  Returns the socket or -1 with errno from the last attempt. */
HIDDEN int connect_daemon(int cloexec, char *tried, size_t tried_size)
{
    const char *paths[3];
    char user_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int n = 0, err = ENOENT;
    const char *env = getenv("VDPAD_SOCKET");
    if (env && *env) {
        paths[n++] = env;
    } else {
        const char *xdg = getenv("XDG_RUNTIME_DIR");
        paths[n++] = "/run/vdpad/vdpad.sock";
        if (getuid() != 0) {
            snprintf(user_path, sizeof(user_path), "%s", xdg && *xdg ? xdg : "./.vdpad");
            strncat(user_path, xdg && *xdg ? "/vdpad.sock" : "/vdpad.sock", sizeof(user_path) - strlen(user_path) - 1);
            paths[n++] = user_path;
        }
    }
    tried[0] = 0;
    for (int k = 0; k < n; k++) {
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        int sock;
        if (strlen(paths[k]) >= sizeof(addr.sun_path))
            continue;
        strcpy(addr.sun_path, paths[k]);
        snprintf(tried + strlen(tried), tried_size - strlen(tried), "%s%s", k ? " and " : "", paths[k]);
        sock = socket(AF_UNIX, SOCK_STREAM | (cloexec ? SOCK_CLOEXEC : 0), 0);
        if (sock < 0)
            return -1;
        if (connect(sock, (struct sockaddr *)&addr, sizeof(addr)) == 0)
            return sock;
        err = errno;
        real_close(sock);
    }
    errno = err;
    return -1;
}
