/*
 * berth-shim: the monitor of one container process (a container's init, or one exec).
 *
 * It detaches from its starter, runs `runc create` (or `runc exec --detach`), owns the
 * resulting process as its child subreaper, relays its stdio, records its exit in the
 * state dir and exits once the output is drained. Its whole interface — command line,
 * state-dir files, control commands — is described in shim/README.md.
 *
 * libc only, one thread, one poll loop; every fd it owns is close-on-exec.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "oom.h"
#include "options.h"
#include "relay.h"
#include "util.h"

/* After the process exits, output still trickling in is waited for this long between reads. */
#define DRAIN_IDLE_MS 2000
/* runc's own error text that is kept for the starter. */
#define RUNC_ERROR_MAX 4096

struct shim {
    struct options options;
    int state_dir;
    int dev_null;
    int signal_fd;
    int control_fd;
    struct log_file output_log;
    int console_listener;
    int console_conn;
    int console_master;
    pid_t runc_pid;
    pid_t main_pid;
    bool exited;
    struct output_stream out;
    struct output_stream err;
    struct input_stream in;
    /* The fds runc (and through it, a non-terminal container) gets as 0, 1, 2. */
    int child_stdio[3];
    char runc_error[RUNC_ERROR_MAX];
    size_t runc_error_length;
    char control_line[256];
    size_t control_length;
    /* The init's memory cgroup, while its process runs (an exec shares it: not watched twice). */
    struct oom_watch oom;
};

static struct shim shim;

/* ---- starting up ------------------------------------------------------------------- */

/* Only the sync fd survives, as fd 3; 0-2 stay until the shim replaces them with /dev/null. */
static void close_inherited_fds(struct options *o)
{
    if (o->sync_fd >= 0 && o->sync_fd != 3) {
        if (dup2(o->sync_fd, 3) < 0)
            usage_error(shim.options.sync_fd, "dup2 of the sync fd: %s", strerror(errno));
        o->sync_fd = 3;
    }
    unsigned int first = o->sync_fd >= 0 ? 4 : 3;
    if (close_range(first, ~0U, 0) != 0)
        usage_error(shim.options.sync_fd, "close_range: %s", strerror(errno));
    if (o->sync_fd >= 0 && fcntl(o->sync_fd, F_SETFD, FD_CLOEXEC) != 0)
        usage_error(shim.options.sync_fd, "fcntl on the sync fd: %s", strerror(errno));
}

/*
 * Two forks and a new session: the shim is nobody's child but init's (or the nearest
 * subreaper's), leads no session (so it can never acquire a controlling terminal), and
 * survives its starter. The first process waits for the middle one so no zombie lingers.
 */
static void detach(void)
{
    pid_t middle = fork();
    if (middle < 0)
        usage_error(shim.options.sync_fd, "fork: %s", strerror(errno));
    if (middle > 0) {
        int status;
        while (waitpid(middle, &status, 0) < 0) {
            if (errno != EINTR)
                usage_error(shim.options.sync_fd, "waitpid: %s", strerror(errno));
        }
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
    }
    if (setsid() < 0)
        usage_error(shim.options.sync_fd, "setsid: %s", strerror(errno));
    pid_t shim_pid = fork();
    if (shim_pid < 0)
        usage_error(shim.options.sync_fd, "fork: %s", strerror(errno));
    if (shim_pid > 0)
        _exit(0);
}

/* ---- failing after detaching ------------------------------------------------------- */

static void remove_runtime_files(void)
{
    if (shim.state_dir < 0)
        return;
    unlinkat(shim.state_dir, "control", 0);
    unlinkat(shim.state_dir, "console.sock", 0);
}

static void report_to_starter(const char *text)
{
    if (shim.options.sync_fd < 0)
        return;
    /* A starter that died meanwhile gives EPIPE (SIGPIPE is ignored): nothing to do. */
    (void)write_all(shim.options.sync_fd, text, strlen(text));
    close_quietly(shim.options.sync_fd);
    shim.options.sync_fd = -1;
}

/*
 * Start failed: the starter learns why, nothing of this shim stays running and only
 * shim.log and runc.log remain as evidence. A process runc did create is killed.
 */
static void fail_start(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void fail_start(const char *fmt, ...)
{
    char message[RUNC_ERROR_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    diag("start failed: %s", message);
    if (shim.main_pid > 0 && kill(shim.main_pid, SIGKILL) != 0 && errno != ESRCH)
        diag("kill %d: %m", shim.main_pid);
    remove_runtime_files();
    unlinkat(shim.state_dir, "shim.pid", 0);
    char line[sizeof message + 16];
    snprintf(line, sizeof line, "error %s\n", message);
    report_to_starter(line);
    exit(1);
}

/* ---- setting up -------------------------------------------------------------------- */

static const int ignored_signals[] = { SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2 };
#define IGNORED_COUNT (sizeof ignored_signals / sizeof ignored_signals[0])

/* SIGCHLD arrives through a signalfd; the rest of a dying starter's signals are ignored. */
static void setup_signals(void)
{
    struct sigaction ignore = { .sa_handler = SIG_IGN };
    sigemptyset(&ignore.sa_mask);
    for (size_t i = 0; i < IGNORED_COUNT; i++) {
        if (sigaction(ignored_signals[i], &ignore, NULL) != 0)
            fail_start("sigaction: %s", strerror(errno));
    }
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &chld, NULL) != 0)
        fail_start("sigprocmask: %s", strerror(errno));
    shim.signal_fd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    if (shim.signal_fd < 0)
        fail_start("signalfd: %s", strerror(errno));
}

/* Ignored dispositions and the blocked mask survive execve: runc and the container must not inherit them. */
static void reset_signals_for_child(void)
{
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    sigemptyset(&dfl.sa_mask);
    for (size_t i = 0; i < IGNORED_COUNT; i++)
        sigaction(ignored_signals[i], &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static void write_shim_pid(void)
{
    char text[32];
    int n = snprintf(text, sizeof text, "%d\n", (int)getpid());
    /* Not durable: after a crash of the machine no shim runs, so no pid to find is right. */
    if (!write_file_atomic(shim.state_dir, "shim.pid", text, (size_t)n, false))
        fail_start("writing shim.pid: %s", strerror(errno));
}

/* The control FIFO is opened read-write: the shim never sees EOF when a client hangs up. */
static void open_control(void)
{
    if (mkfifoat(shim.state_dir, "control", 0600) != 0)
        fail_start("creating %s/control: %s%s", shim.options.state_dir, strerror(errno),
                   errno == EEXIST ? " (is another shim using this state dir?)" : "");
    shim.control_fd = openat(shim.state_dir, "control", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (shim.control_fd < 0)
        fail_start("opening %s/control: %s", shim.options.state_dir, strerror(errno));
}

/*
 * Client FIFOs are opened O_RDWR | O_NONBLOCK: on Linux that never blocks and never
 * fails for want of a peer, whether or not the client has opened its end yet.
 */
static int open_fifo(const char *flag, const char *path)
{
    int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        fail_start("%s %s: %s", flag, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0)
        fail_start("%s %s: %s", flag, path, strerror(errno));
    if (!S_ISFIFO(st.st_mode))
        fail_start("%s %s: not a FIFO", flag, path);
    return fd;
}

static int open_log(void)
{
    int fd = open(shim.options.log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
    if (fd < 0)
        diag("--log %s: %m", shim.options.log_path);
    return fd;
}

/* A pipe whose shim end (index keep) is non-blocking and whose container end is blocking. */
static void make_pipe(int fds[2], int keep)
{
    if (pipe2(fds, O_CLOEXEC) != 0)
        fail_start("pipe2: %s", strerror(errno));
    if (!set_nonblocking(fds[keep]))
        fail_start("fcntl O_NONBLOCK: %s", strerror(errno));
}

/*
 * runc's console socket lives in the state dir, but is bound and named through
 * /proc/<pid>/fd/<dirfd>/: a UNIX socket path is limited to 108 bytes, a state dir is not.
 */
static void listen_console(char *runc_path, size_t size)
{
    struct sockaddr_un address = { .sun_family = AF_UNIX };
    snprintf(address.sun_path, sizeof address.sun_path, "/proc/self/fd/%d/console.sock", shim.state_dir);
    snprintf(runc_path, size, "/proc/%d/fd/%d/console.sock", (int)getpid(), shim.state_dir);
    shim.console_listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (shim.console_listener < 0)
        fail_start("socket: %s", strerror(errno));
    if (bind(shim.console_listener, (struct sockaddr *)&address, sizeof address) != 0)
        fail_start("binding %s/console.sock: %s", shim.options.state_dir, strerror(errno));
    if (listen(shim.console_listener, 1) != 0)
        fail_start("listen: %s", strerror(errno));
}

static void setup_stdio(void)
{
    const struct options *o = &shim.options;
    shim.dev_null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (shim.dev_null < 0)
        fail_start("/dev/null: %s", strerror(errno));
    shim.output_log.format = o->log_format;
    if (o->log_path != NULL && (shim.output_log.fd = open_log()) < 0)
        fail_start("--log %s: %s", o->log_path, strerror(errno));

    shim.out = (struct output_stream){ .name = "stdout", .source = -1, .fifo = -1, .log = &shim.output_log };
    shim.err = (struct output_stream){ .name = "stderr", .source = -1, .fifo = -1, .log = &shim.output_log };
    shim.in = (struct input_stream){ .fifo = -1, .sink = -1 };
    if (o->stdout_path != NULL)
        shim.out.fifo = open_fifo("--stdout", o->stdout_path);
    if (o->stderr_path != NULL)
        shim.err.fifo = open_fifo("--stderr", o->stderr_path);
    if (o->stdin_path != NULL)
        shim.in.fifo = open_fifo("--stdin", o->stdin_path);

    /* stderr is always a pipe: runc prints its errors there before any container exists. */
    int fds[2];
    make_pipe(fds, 0);
    shim.err.source = fds[0];
    shim.err.owns_source = true;
    shim.child_stdio[2] = fds[1];
    if (o->terminal) {
        /* The pty carries the container's stdio; runc gets /dev/null for the rest. */
        shim.child_stdio[0] = shim.dev_null;
        shim.child_stdio[1] = shim.dev_null;
        return;
    }
    if (shim.in.fifo >= 0) {
        make_pipe(fds, 1);
        shim.child_stdio[0] = fds[0];
        shim.in.sink = fds[1];
        shim.in.owns_sink = true;
    } else {
        shim.child_stdio[0] = shim.dev_null;
    }
    if (shim.out.fifo >= 0 || shim.output_log.fd >= 0) {
        make_pipe(fds, 0);
        shim.out.source = fds[0];
        shim.out.owns_source = true;
        shim.child_stdio[1] = fds[1];
    } else {
        shim.child_stdio[1] = shim.dev_null;
    }
}

/* ---- runc create / exec ------------------------------------------------------------ */

static void spawn_runc(const char *console_path)
{
    const struct options *o = &shim.options;
    char log_path[PATH_MAX], pid_path[PATH_MAX];
    snprintf(log_path, sizeof log_path, "%s/runc.log", o->state_dir);
    snprintf(pid_path, sizeof pid_path, "%s/pid", o->state_dir);
    const char *argv[24];
    size_t argc = 0;
    argv[argc++] = o->runc;
    argv[argc++] = "--root";
    argv[argc++] = o->runc_root;
    argv[argc++] = "--log";
    argv[argc++] = log_path;
    argv[argc++] = "--log-format";
    argv[argc++] = "json";
    if (o->exec_process != NULL) {
        argv[argc++] = "exec";
        argv[argc++] = "--detach";
        argv[argc++] = "--process";
        argv[argc++] = o->exec_process;
    } else {
        argv[argc++] = "create";
        argv[argc++] = "--bundle";
        argv[argc++] = o->bundle;
    }
    argv[argc++] = "--pid-file";
    argv[argc++] = pid_path;
    if (console_path != NULL) {
        argv[argc++] = "--console-socket";
        argv[argc++] = console_path;
    }
    argv[argc++] = o->id;
    argv[argc] = NULL;

    shim.runc_pid = fork();
    if (shim.runc_pid < 0)
        fail_start("fork: %s", strerror(errno));
    if (shim.runc_pid > 0)
        return;

    /* The child: its errors go to the stderr pipe, which the shim reports as runc's. */
    for (int fd = 0; fd < 3; fd++) {
        if (dup2(shim.child_stdio[fd], fd) < 0)
            _exit(127);
    }
    if (close_range(3, ~0U, 0) != 0) {
        dprintf(STDERR_FILENO, "berth-shim: close_range: %s\n", strerror(errno));
        _exit(127);
    }
    reset_signals_for_child();
    if (o->bundle != NULL && chdir(o->bundle) != 0) {
        dprintf(STDERR_FILENO, "berth-shim: chdir %s: %s\n", o->bundle, strerror(errno));
        _exit(127);
    }
    execvp(o->runc, (char *const *)argv);
    dprintf(STDERR_FILENO, "berth-shim: cannot run %s: %s\n", o->runc, strerror(errno));
    _exit(127);
}

static size_t runc_error_room(void)
{
    /* One byte for the NUL that makes it a message. */
    return sizeof shim.runc_error - 1 - shim.runc_error_length;
}

/*
 * Collects what arrives on the stderr pipe while runc runs. An exec's process may already
 * write there too: once the buffer is full the rest waits in the pipe for the relay.
 */
static void capture_runc_error(void)
{
    while (runc_error_room() > 0) {
        ssize_t n = read(shim.err.source, shim.runc_error + shim.runc_error_length, runc_error_room());
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        shim.runc_error_length += (size_t)n;
    }
}

/* Takes the pty master runc sends over the console socket (SCM_RIGHTS). */
static void receive_console(void)
{
    char name[512];
    struct iovec iov = { .iov_base = name, .iov_len = sizeof name };
    union {
        struct cmsghdr align;
        char buffer[CMSG_SPACE(sizeof(int) * 4)];
    } control;
    struct msghdr message = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buffer,
                              .msg_controllen = sizeof control.buffer };
    ssize_t n;
    do
        n = recvmsg(shim.console_conn, &message, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n < 0)
        fail_start("receiving the console from runc: %s", strerror(errno));
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&message); c != NULL; c = CMSG_NXTHDR(&message, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (shim.console_master < 0)
                shim.console_master = fd;
            else
                close_quietly(fd);
        }
    }
    /* Without a terminal in it (runc failed half-way), runc's own error says why, once it exits. */
    close_quietly(shim.console_conn);
    shim.console_conn = -1;
}

static void accept_console(void)
{
    int conn = accept4(shim.console_listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (conn < 0) {
        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
            return;
        fail_start("accept on the console socket: %s", strerror(errno));
    }
    if (shim.console_conn >= 0)
        close_quietly(conn); /* only runc is meant to connect, and only once */
    else
        shim.console_conn = conn;
}

/* Reaps runc only: the container process, reparented to the shim, must wait in its zombie state until the main loop. */
static bool reap_runc(int *status)
{
    struct signalfd_siginfo info;
    while (read(shim.signal_fd, &info, sizeof info) > 0)
        ;
    pid_t pid;
    do
        pid = waitpid(shim.runc_pid, status, WNOHANG);
    while (pid < 0 && errno == EINTR);
    if (pid < 0)
        fail_start("waitpid runc: %s", strerror(errno));
    return pid == shim.runc_pid;
}

static pid_t read_pid_file(void)
{
    char text[32];
    int fd = openat(shim.state_dir, "pid", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fail_start("runc wrote no pid file: %s", strerror(errno));
    ssize_t n;
    do
        n = read(fd, text, sizeof text - 1);
    while (n < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    if (n < 0)
        fail_start("reading the pid file: %s", strerror(saved));
    text[n] = '\0';
    char *end;
    errno = 0;
    long pid = strtol(text, &end, 10);
    if (errno != 0 || end == text || pid <= 0 || pid > INT_MAX || (*end != '\0' && *end != '\n'))
        fail_start("runc's pid file holds \"%s\", not a pid", text);
    return (pid_t)pid;
}

static void trim_trailing_space(char *text, size_t *length)
{
    while (*length > 0 && (text[*length - 1] == '\n' || text[*length - 1] == ' ' || text[*length - 1] == '\r'))
        (*length)--;
    text[*length] = '\0';
}

/* Runs runc until it exits, collecting its error output and (for a terminal) the pty master. */
static void create_container(void)
{
    char console_path[128];
    if (shim.options.terminal)
        listen_console(console_path, sizeof console_path);
    spawn_runc(shim.options.terminal ? console_path : NULL);
    /* The container end of each pipe now belongs to runc and the container alone. */
    for (int fd = 0; fd < 3; fd++) {
        if (shim.child_stdio[fd] != shim.dev_null)
            close_quietly(shim.child_stdio[fd]);
        shim.child_stdio[fd] = -1;
    }
    close_quietly(shim.dev_null);
    shim.dev_null = -1;

    int status = 0;
    bool runc_done = false;
    while (!runc_done) {
        struct pollfd fds[4] = {
            { .fd = shim.signal_fd, .events = POLLIN },
            { .fd = runc_error_room() > 0 ? shim.err.source : -1, .events = POLLIN },
            { .fd = shim.console_listener, .events = POLLIN },
            { .fd = shim.console_conn, .events = POLLIN },
        };
        if (poll(fds, 4, -1) < 0) {
            if (errno == EINTR)
                continue;
            fail_start("poll: %s", strerror(errno));
        }
        if (fds[1].revents != 0)
            capture_runc_error();
        if (fds[2].revents != 0)
            accept_console();
        if (fds[3].revents != 0)
            receive_console();
        if (fds[0].revents != 0)
            runc_done = reap_runc(&status);
    }
    capture_runc_error();
    const char *verb = shim.options.exec_process != NULL ? "exec" : "create";
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char how[64];
        if (WIFSIGNALED(status))
            snprintf(how, sizeof how, "was killed by signal %d", WTERMSIG(status));
        else
            snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
        trim_trailing_space(shim.runc_error, &shim.runc_error_length);
        if (shim.runc_error_length > 0)
            fail_start("%s", shim.runc_error);
        fail_start("runc %s %s and printed nothing (see %s/runc.log)", verb, how, shim.options.state_dir);
    }
    shim.main_pid = read_pid_file();

    if (shim.options.terminal) {
        /* runc has sent the master before exiting: it is queued on the socket. */
        if (shim.console_conn < 0)
            accept_console();
        if (shim.console_conn >= 0)
            receive_console();
        if (shim.console_master < 0)
            fail_start("runc %s succeeded but sent no terminal over the console socket", verb);
        close_quietly(shim.console_listener);
        shim.console_listener = -1;
        unlinkat(shim.state_dir, "console.sock", 0);
        if (!set_nonblocking(shim.console_master))
            fail_start("fcntl O_NONBLOCK on the pty master: %s", strerror(errno));
        shim.out.source = shim.console_master;
        shim.out.owns_source = false;
        if (shim.in.fifo >= 0)
            shim.in.sink = shim.console_master;
        /* runc's stderr pipe has served its purpose; the pty carries the container's. */
        close_quietly(shim.err.source);
        shim.err.source = -1;
        shim.err.eof = true;
    } else if (shim.runc_error_length > 0 && (shim.err.fifo >= 0 || shim.output_log.fd >= 0)) {
        /*
         * What arrived while runc ran is the container's stderr, byte for byte: an exec's
         * first output, or runc's warnings (which share that stderr under runc alone too).
         */
        if (!log_append(&shim.output_log, "stderr", shim.runc_error, shim.runc_error_length))
            diag("stderr: writing the log failed (%m)");
        if (shim.err.fifo >= 0 && !write_all(shim.err.fifo, shim.runc_error, shim.runc_error_length))
            diag("stderr: writing the FIFO failed (%m)");
    }
}

/* ---- running ----------------------------------------------------------------------- */

static void write_exit_file(int status)
{
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0)
        now = (struct timespec){ 0, 0 };
    char when[64];
    format_rfc3339(&now, when, sizeof when);
    /* Exit status as containerd reports it: the code, or 128 + the signal that killed it. */
    int signal_number = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    int exit_status = WIFSIGNALED(status) ? 128 + signal_number : WEXITSTATUS(status);
    char text[256];
    int n = snprintf(text, sizeof text, "{\"pid\":%d,\"exitStatus\":%d,\"signal\":%d,\"exitedAt\":\"%s\"}\n",
                     (int)shim.main_pid, exit_status, signal_number, when);
    if (!write_file_atomic(shim.state_dir, "exit", text, (size_t)n, true))
        diag("writing the exit file failed: %m");
}

/*
 * The OOM kills counted in the process's cgroup so far, recorded before the exit so that a
 * reader that sees the exit sees them too: {"oomKills":1,"lastOomAt":"<RFC 3339 ns>"}.
 */
static void record_oom_kills(void)
{
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0)
        now = (struct timespec){ 0, 0 };
    char when[64];
    format_rfc3339(&now, when, sizeof when);
    char text[160];
    int n = snprintf(text, sizeof text, "{\"oomKills\":%llu,\"lastOomAt\":\"%s\"}\n", shim.oom.kills, when);
    if (!write_file_atomic(shim.state_dir, "oom", text, (size_t)n, true))
        diag("writing the oom file failed: %m");
}

static void check_oom(bool woke)
{
    if (oom_watch_check(&shim.oom, woke))
        record_oom_kills();
}

static void reap_children(void)
{
    struct signalfd_siginfo info;
    while (read(shim.signal_fd, &info, sizeof info) > 0)
        ;
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid <= 0)
            return; /* ECHILD: nothing left; 0: the rest still run */
        if (pid == shim.main_pid && !shim.exited) {
            shim.exited = true;
            /* The kernel counts a kill before its victim can be reaped: a kill that ended the process is seen here. */
            check_oom(false);
            oom_watch_stop(&shim.oom);
            write_exit_file(status);
            /* Nobody is left to read stdin. */
            input_close(&shim.in);
        }
    }
}

static void apply_resize(const char *arguments)
{
    unsigned int columns, rows;
    char extra;
    if (sscanf(arguments, "%u %u %c", &columns, &rows, &extra) != 2 || columns > USHRT_MAX || rows > USHRT_MAX) {
        diag("control: resize needs two numbers from 0 to 65535 (columns rows), got \"%s\"", arguments);
        return;
    }
    if (shim.console_master < 0) {
        diag("control: resize ignored, the process has no terminal");
        return;
    }
    struct winsize size = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)columns };
    if (ioctl(shim.console_master, TIOCSWINSZ, &size) != 0)
        diag("control: TIOCSWINSZ: %m");
}

static void reopen_log(void)
{
    if (shim.options.log_path == NULL) {
        diag("control: reopen-log ignored, there is no --log");
        return;
    }
    int fd = open_log();
    if (fd < 0)
        return; /* keep writing to the old one */
    close_quietly(shim.output_log.fd);
    shim.output_log.fd = fd;
}

static void run_command(char *line)
{
    if (strncmp(line, "resize ", 7) == 0)
        apply_resize(line + 7);
    else if (strcmp(line, "close-stdin") == 0)
        shim.in.closing = true;
    else if (strcmp(line, "reopen-log") == 0)
        reopen_log();
    else if (line[0] != '\0')
        diag("control: unknown command \"%s\"", line);
}

/* Commands are lines; a client writes each with one write(2) (atomic below PIPE_BUF). */
static void read_control(void)
{
    for (;;) {
        ssize_t n = read(shim.control_fd, shim.control_line + shim.control_length,
                         sizeof shim.control_line - 1 - shim.control_length);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        shim.control_length += (size_t)n;
        char *start = shim.control_line;
        char *newline;
        while ((newline = memchr(start, '\n', shim.control_length - (size_t)(start - shim.control_line))) != NULL) {
            *newline = '\0';
            run_command(start);
            start = newline + 1;
        }
        size_t rest = shim.control_length - (size_t)(start - shim.control_line);
        if (rest == sizeof shim.control_line - 1) {
            diag("control: a command longer than %zu bytes was dropped", rest);
            rest = 0;
        }
        memmove(shim.control_line, start, rest);
        shim.control_length = rest;
    }
}

static bool output_drained(void)
{
    return output_finished(&shim.out) && output_finished(&shim.err);
}

static void run(void)
{
    /* Anything already reparented and dead (the process may have exited before now). */
    reap_children();
    for (;;) {
        if (shim.exited && output_drained())
            return;
        struct pollfd fds[6];
        int count = 0;
        fds[count++] = (struct pollfd){ .fd = shim.signal_fd, .events = POLLIN };
        fds[count++] = (struct pollfd){ .fd = shim.control_fd, .events = POLLIN };
        int out_at = -1, err_at = -1, in_at = -1, oom_at = -1;
        int fd;
        short events;
        if (output_interest(&shim.out, &fd, &events)) {
            out_at = count;
            fds[count++] = (struct pollfd){ .fd = fd, .events = events };
        }
        if (output_interest(&shim.err, &fd, &events)) {
            err_at = count;
            fds[count++] = (struct pollfd){ .fd = fd, .events = events };
        }
        if (input_interest(&shim.in, &fd, &events)) {
            in_at = count;
            fds[count++] = (struct pollfd){ .fd = fd, .events = events };
        }
        if (shim.oom.wake_fd >= 0) {
            oom_at = count;
            fds[count++] = (struct pollfd){ .fd = shim.oom.wake_fd, .events = shim.oom.wake_events };
        }
        /* A closing stdin with nothing buffered must look at the FIFO once more, now. */
        bool input_due = shim.in.closing && shim.in.fifo >= 0 && shim.in.pending_length == 0;
        int timeout = input_due ? 0 : shim.exited ? DRAIN_IDLE_MS : oom_watch_timeout(&shim.oom);
        int ready = poll(fds, (nfds_t)count, timeout);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            diag("poll: %m");
            return;
        }
        if (ready == 0 && shim.exited && !input_due) {
            diag("output still open %d ms after the process exited (held by a leftover process?): giving up on it",
                 DRAIN_IDLE_MS);
            return;
        }
        /* Before reaping: an OOM kill of the process itself is recorded ahead of its exit either way. */
        bool oom_woke = oom_at >= 0 && fds[oom_at].revents != 0;
        if (oom_woke || shim.oom.rechecking)
            check_oom(oom_woke);
        if (fds[0].revents != 0)
            reap_children();
        /* Control before stdin: a resize written before some input applies before that input arrives. */
        if (fds[1].revents != 0)
            read_control();
        if (out_at >= 0 && fds[out_at].revents != 0)
            output_pump(&shim.out);
        if (err_at >= 0 && fds[err_at].revents != 0)
            output_pump(&shim.err);
        if ((in_at >= 0 && fds[in_at].revents != 0) || shim.in.closing)
            input_pump(&shim.in);
        if (shim.options.terminal && shim.out.eof)
            input_close(&shim.in);
    }
}

static void shut_down(void)
{
    oom_watch_stop(&shim.oom);
    output_close(&shim.out);
    output_close(&shim.err);
    input_close(&shim.in);
    close_quietly(shim.console_master);
    close_quietly(shim.output_log.fd);
    close_quietly(shim.control_fd);
    close_quietly(shim.signal_fd);
    close_quietly(shim.dev_null);
    remove_runtime_files();
    diag_close();
    close_quietly(shim.state_dir);
}

int main(int argc, char **argv)
{
    shim.options.sync_fd = -1;
    parse_options(argc, argv, &shim.options);
    close_inherited_fds(&shim.options);
    shim.state_dir = shim.signal_fd = shim.control_fd = shim.output_log.fd = shim.dev_null = -1;
    shim.console_listener = shim.console_conn = shim.console_master = -1;
    shim.child_stdio[0] = shim.child_stdio[1] = shim.child_stdio[2] = -1;
    shim.oom = (struct oom_watch){ .wake_fd = -1, .counter_fd = -1 };
    shim.state_dir = open(shim.options.state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (shim.state_dir < 0)
        usage_error(shim.options.sync_fd, "--state-dir %s: %s", shim.options.state_dir, strerror(errno));
    detach();

    /* The shim proper: a new session, reparented away from its starter. */
    diag_open(shim.state_dir);
    if (chdir("/") != 0)
        fail_start("chdir /: %s", strerror(errno));
    int null_fd = open("/dev/null", O_RDWR);
    if (null_fd < 0)
        fail_start("/dev/null: %s", strerror(errno));
    for (int fd = 0; fd < 3; fd++) {
        if (dup2(null_fd, fd) < 0)
            fail_start("dup2 /dev/null: %s", strerror(errno));
    }
    if (null_fd > 2)
        close(null_fd);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
        fail_start("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
    setup_signals();
    write_shim_pid();
    open_control();
    setup_stdio();
    create_container();
    /* Watching starts before runc start lets the process run, so no kill goes uncounted. */
    if (shim.options.exec_process == NULL)
        oom_watch_start(&shim.oom, shim.main_pid);

    char ready[64];
    snprintf(ready, sizeof ready, "ok %d\n", (int)shim.main_pid);
    report_to_starter(ready);

    run();
    shut_down();
    return 0;
}
