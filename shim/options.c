#define _GNU_SOURCE
#include "options.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void usage_error(int sync_fd, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    dprintf(STDERR_FILENO, "berth-shim: %s\n", message);
    if (sync_fd >= 0)
        dprintf(sync_fd, "error %s\n", message);
    exit(2);
}

static void require_absolute(const struct options *o, const char *flag, const char *path)
{
    if (path != NULL && path[0] != '\0' && path[0] != '/')
        usage_error(o->sync_fd, "%s must be an absolute path, got \"%s\"", flag, path);
}

static void require_directory(const struct options *o, const char *flag, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        usage_error(o->sync_fd, "%s %s: %s", flag, path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        usage_error(o->sync_fd, "%s %s: not a directory", flag, path);
}

static const char *empty_to_null(const char *value)
{
    return value != NULL && value[0] != '\0' ? value : NULL;
}

void parse_options(int argc, char **argv, struct options *o)
{
    enum { OPT_STATE_DIR = 256, OPT_RUNC, OPT_RUNC_ROOT, OPT_BUNDLE, OPT_ID, OPT_EXEC, OPT_STDIN, OPT_STDOUT, OPT_STDERR,
           OPT_LOG, OPT_LOG_FORMAT, OPT_TERMINAL, OPT_SYNC_FD };
    static const struct option long_options[] = {
        { "state-dir", required_argument, NULL, OPT_STATE_DIR },
        { "runc", required_argument, NULL, OPT_RUNC },
        { "runc-root", required_argument, NULL, OPT_RUNC_ROOT },
        { "bundle", required_argument, NULL, OPT_BUNDLE },
        { "id", required_argument, NULL, OPT_ID },
        { "exec", required_argument, NULL, OPT_EXEC },
        { "stdin", required_argument, NULL, OPT_STDIN },
        { "stdout", required_argument, NULL, OPT_STDOUT },
        { "stderr", required_argument, NULL, OPT_STDERR },
        { "log", required_argument, NULL, OPT_LOG },
        { "log-format", required_argument, NULL, OPT_LOG_FORMAT },
        { "terminal", no_argument, NULL, OPT_TERMINAL },
        { "sync-fd", required_argument, NULL, OPT_SYNC_FD },
        { NULL, 0, NULL, 0 },
    };
    *o = (struct options){ .sync_fd = -1 };
    /* The sync fd first, so that every later usage error reaches the starter too. */
    for (int i = 1; i < argc; i++) {
        const char *value = NULL;
        if (strcmp(argv[i], "--sync-fd") == 0 && i + 1 < argc)
            value = argv[i + 1];
        else if (strncmp(argv[i], "--sync-fd=", 10) == 0)
            value = argv[i] + 10;
        if (value == NULL)
            continue;
        char *end;
        errno = 0;
        long fd = strtol(value, &end, 10);
        if (errno == 0 && *end == '\0' && end != value && fd >= 3 && fd < INT_MAX && fcntl((int)fd, F_GETFD) >= 0)
            o->sync_fd = (int)fd;
    }
    bool log_format_given = false;
    opterr = 0;
    int option;
    while ((option = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        switch (option) {
        case OPT_STATE_DIR: o->state_dir = optarg; break;
        case OPT_RUNC: o->runc = optarg; break;
        case OPT_RUNC_ROOT: o->runc_root = optarg; break;
        case OPT_BUNDLE: o->bundle = empty_to_null(optarg); break;
        case OPT_ID: o->id = optarg; break;
        case OPT_EXEC: o->exec_process = empty_to_null(optarg); break;
        case OPT_STDIN: o->stdin_path = empty_to_null(optarg); break;
        case OPT_STDOUT: o->stdout_path = empty_to_null(optarg); break;
        case OPT_STDERR: o->stderr_path = empty_to_null(optarg); break;
        case OPT_LOG: o->log_path = empty_to_null(optarg); break;
        case OPT_LOG_FORMAT:
            if (strcmp(optarg, "raw") == 0)
                o->log_format = LOG_FORMAT_RAW;
            else if (strcmp(optarg, "json") == 0)
                o->log_format = LOG_FORMAT_JSON;
            else
                usage_error(o->sync_fd, "--log-format must be raw or json, got \"%s\"", optarg);
            log_format_given = true;
            break;
        case OPT_TERMINAL: o->terminal = true; break;
        case OPT_SYNC_FD:
            if (o->sync_fd < 0)
                usage_error(o->sync_fd, "--sync-fd %s: not an open file descriptor number of 3 or more", optarg);
            break;
        case ':':
            usage_error(o->sync_fd, "%s needs a value", argv[optind - 1]);
        default:
            usage_error(o->sync_fd, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        usage_error(o->sync_fd, "unexpected argument \"%s\"", argv[optind]);
    if (o->state_dir == NULL || o->state_dir[0] == '\0')
        usage_error(o->sync_fd, "--state-dir is required");
    if (o->runc == NULL || o->runc[0] == '\0')
        usage_error(o->sync_fd, "--runc is required");
    if (o->runc_root == NULL || o->runc_root[0] == '\0')
        usage_error(o->sync_fd, "--runc-root is required");
    if (o->id == NULL || o->id[0] == '\0')
        usage_error(o->sync_fd, "--id is required");
    if (strchr(o->id, '/') != NULL)
        usage_error(o->sync_fd, "--id \"%s\" must not contain '/'", o->id);
    if (o->exec_process == NULL && o->bundle == NULL)
        usage_error(o->sync_fd, "--bundle is required (or --exec for an exec process)");
    if (o->exec_process != NULL && o->bundle != NULL)
        usage_error(o->sync_fd, "--bundle and --exec exclude each other: an exec runs in the existing container");
    if (log_format_given && o->log_path == NULL)
        usage_error(o->sync_fd, "--log-format needs --log");
    if (o->terminal && o->stderr_path != NULL)
        usage_error(o->sync_fd, "--stderr cannot be used with --terminal: a terminal merges stderr into stdout");
    /* The shim runs in "/", so a relative path would change meaning. */
    require_absolute(o, "--state-dir", o->state_dir);
    require_absolute(o, "--runc-root", o->runc_root);
    require_absolute(o, "--bundle", o->bundle);
    require_absolute(o, "--exec", o->exec_process);
    require_absolute(o, "--stdin", o->stdin_path);
    require_absolute(o, "--stdout", o->stdout_path);
    require_absolute(o, "--stderr", o->stderr_path);
    require_absolute(o, "--log", o->log_path);
    require_directory(o, "--state-dir", o->state_dir);
    if (o->bundle != NULL)
        require_directory(o, "--bundle", o->bundle);
    if (o->exec_process != NULL && access(o->exec_process, R_OK) != 0)
        usage_error(o->sync_fd, "--exec %s: %s", o->exec_process, strerror(errno));
}
