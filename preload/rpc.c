/* rpc.c — one JSON-RPC exchange with vdpad: send (with a passed descriptor), read the reply that is
 * not a notification, and give the kernel's errno for an error. */
#include "vdpad_vhost.h"

#include <poll.h>

/* ---- one JSON-RPC exchange ---------------------------------------------- */

static int errno_named(const char *name)
{
    static const struct { const char *name; int value; } names[] = {
        { "EPERM", EPERM }, { "EIO", EIO }, { "E2BIG", E2BIG }, { "EBADF", EBADF }, { "EACCES", EACCES },
        { "EFAULT", EFAULT }, { "EBUSY", EBUSY }, { "EEXIST", EEXIST }, { "ENODEV", ENODEV },
        { "EINVAL", EINVAL }, { "ENOSPC", ENOSPC }, { "EOPNOTSUPP", EOPNOTSUPP }, { "ENOBUFS", ENOBUFS },
        { "ENOTTY", ENOTTY },
    };
    for (size_t k = 0; name && k < sizeof(names) / sizeof(names[0]); k++)
        if (strcmp(names[k].name, name) == 0)
            return names[k].value;
    return EINVAL;
}

/* Waits until the socket is ready for `events`, as long as it takes or the session's `reply_wait_ms`: poll's
 * answer, 0 when the wait ran out.  The connection shares its file status flags with the VMM's names for it: a
 * VMM that sets O_NONBLOCK on its vhost-vdpa fd (which changes only the kernel's read()) makes the session's
 * socket non-blocking too, and an exchange waits here instead of failing. */
static int wait_for(struct session *s, short events)
{
    struct pollfd p = { .fd = s->sock, .events = events };
    int r;
    while ((r = real_poll(&p, 1, s->reply_wait_ms > 0 ? s->reply_wait_ms : -1)) < 0 && errno == EINTR)
        ;
    return r;
}

static int send_all(struct session *s, const char *text, size_t len, int pass_fd)
{
    size_t off = 0;
    while (off < len) {
        struct iovec iov = { (void *)(text + off), len - off };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
        char control[CMSG_SPACE(sizeof(int))];
        ssize_t n;
        if (pass_fd >= 0 && off == 0) {
            /* The eventfd goes with the request's first bytes (docs/protocol.md §5.5). */
            memset(control, 0, sizeof(control));
            msg.msg_control = control;
            msg.msg_controllen = sizeof(control);
            struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
        }
        n = sendmsg(s->sock, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && wait_for(s, POLLOUT) > 0)
            continue;
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    return 0;
}

/* A member of an object, or NULL. */
HIDDEN json_object *member(json_object *o, const char *key)
{
    json_object *v = NULL;
    return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* The next line from the daemon that is not a notification, parsed; NULL (errno set) when the link broke. */
static json_object *read_reply(struct session *s)
{
    for (;;) {
        char *nl = s->buf_len ? memchr(s->buf, '\n', s->buf_len) : NULL;
        if (nl) {
            size_t line = (size_t)(nl - s->buf);
            *nl = 0;
            json_object *j = json_tokener_parse(s->buf);
            memmove(s->buf, nl + 1, s->buf_len - line - 1);
            s->buf_len -= line + 1;
            if (!j) {
                errno = EIO;
                return NULL;
            }
            if (member(j, "method") && !member(j, "id")) {
                json_object_put(j);  /* an event (session_closed, …): not this exchange's */
                continue;
            }
            return j;
        }
        if (s->buf_cap - s->buf_len < 4096) {
            size_t cap = s->buf_cap ? s->buf_cap * 2 : 8192;
            char *grown = realloc(s->buf, cap);
            if (!grown) {
                errno = ENOMEM;
                return NULL;
            }
            s->buf = grown;
            s->buf_cap = cap;
        }
        if (s->reply_wait_ms > 0 && wait_for(s, POLLIN) == 0) {
            errno = ETIMEDOUT;
            return NULL;
        }
        ssize_t n = recv(s->sock, s->buf + s->buf_len, s->buf_cap - s->buf_len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && wait_for(s, POLLIN) > 0)
            continue;
        if (n <= 0) {
            errno = EIO;  /* the daemon went away: the kernel's device is gone too */
            return NULL;
        }
        s->buf_len += (size_t)n;
    }
}


/* Calls `method` with `params` (a JSON object text, without braces) on the session, passing `pass_fd`
 * (or -1).  Returns the result (caller decrefs; NULL for a null result) or NULL with *err set to the
 * kernel's errno (kernel_errno when the daemon gives one: the kernel squashed the reason, R3). */

static json_object *vcall(struct session *s, const char *method, int pass_fd, int *err, const char *fmt, va_list ap)
{
    char params[1024], text[1280];
    json_object *reply, *result = NULL;
    *err = 0;
    vsnprintf(params, sizeof(params), fmt, ap);
    pthread_mutex_lock(&s->lock);
    int len = snprintf(text, sizeof(text), "{\"jsonrpc\":\"2.0\",\"id\":%llu,\"method\":\"%s\",\"params\":{\"device\":\"%s\"%s%s}}\n",
                       ++s->next_id, method, s->device, params[0] ? "," : "", params);
    if (send_all(s, text, (size_t)len, pass_fd) < 0 || !(reply = read_reply(s))) {
        *err = errno == EBADF ? EBADF : EIO;
        pthread_mutex_unlock(&s->lock);
        return NULL;
    }
    pthread_mutex_unlock(&s->lock);
    record(s, method, params, reply);
    json_object *error = member(reply, "error");
    if (error) {
        json_object *data = member(error, "data");
        json_object *kernel = member(data, "kernel_errno");
        *err = errno_named(json_object_get_string(kernel ? kernel : member(data, "errno")));
    } else {
        /* A null result is a missing one: every method the library calls returns an object. */
        result = member(reply, "result");
        if (result)
            json_object_get(result);
        else
            *err = EIO;
    }
    json_object_put(reply);
    return result;
}

HIDDEN json_object *call(struct session *s, const char *method, int pass_fd, int *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_object *r = vcall(s, method, pass_fd, err, fmt, ap);
    va_end(ap);
    return r;
}

/* A method whose result is not needed: 0, or -1 with errno the kernel's. */
HIDDEN int simple(struct session *s, const char *method, const char *fmt, ...)
{
    int err;
    va_list ap;
    va_start(ap, fmt);
    json_object *r = vcall(s, method, -1, &err, fmt, ap);
    va_end(ap);
    if (!r) {
        errno = err;
        return -1;
    }
    json_object_put(r);
    return 0;
}

HIDDEN uint64_t u64_of(json_object *o, const char *key)
{
    json_object *v = key ? member(o, key) : o;
    return v && json_object_is_type(v, json_type_int) ? json_object_get_uint64(v) : 0;
}
