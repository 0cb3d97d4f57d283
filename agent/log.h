/* SPDX-License-Identifier: MIT */
#ifndef NT_LOG_H
#define NT_LOG_H

enum nt_log_level { NT_LOG_ERR, NT_LOG_WARN, NT_LOG_INFO, NT_LOG_DEBUG };

/* Logs go to stderr, one line each: "nettrail: <level>: <message>". */
void log_set_level(enum nt_log_level level);
enum nt_log_level log_get_level(void);
void log_msg(enum nt_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(NT_LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(NT_LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(NT_LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(NT_LOG_DEBUG, __VA_ARGS__)

#endif /* NT_LOG_H */
