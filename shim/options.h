/* The shim's command line: parsing and checking it, before anything else happens. */
#ifndef BERTH_SHIM_OPTIONS_H
#define BERTH_SHIM_OPTIONS_H

#include <stdbool.h>

#include "logfile.h"

struct options {
    const char *state_dir;
    const char *runc;
    const char *runc_root;
    const char *bundle;
    const char *id;
    const char *exec_process; /* set for an exec */
    const char *stdin_path;
    const char *stdout_path;
    const char *stderr_path;
    const char *log_path;
    enum log_format log_format;
    bool terminal;
    int sync_fd;
};

/* Fills o from argv, or exits through usage_error; every path it returns is absolute. */
void parse_options(int argc, char **argv, struct options *o);

/* Before detaching, errors go to the starter's stderr and the sync fd (when >= 0); exit status 2. */
__attribute__((format(printf, 2, 3), noreturn)) void usage_error(int sync_fd, const char *fmt, ...);

#endif
