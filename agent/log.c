// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stdio.h>
#include "log.h"

static enum nt_log_level cur_level = NT_LOG_INFO;
static const char *const level_names[] = { "error", "warning", "info", "debug" };

void log_set_level(enum nt_log_level level)
{
	cur_level = level;
}

enum nt_log_level log_get_level(void)
{
	return cur_level;
}

void log_msg(enum nt_log_level level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (level > cur_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One write per line, so lines of two threads never interleave. */
	fprintf(stderr, "nettrail: %s: %s\n", level_names[level], line);
}
