// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "parse.h"

int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	unsigned long long v;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (*end != '\0')
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

int parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	char digits[32];
	size_t len = s ? strlen(s) : 0;
	unsigned shift = 0;
	uint64_t v;
	int r;

	if (len == 0 || len >= sizeof(digits))
		return -EINVAL;
	memcpy(digits, s, len + 1);
	switch (digits[len - 1]) {
	case 'K': case 'k': shift = 10; break;
	case 'M': case 'm': shift = 20; break;
	case 'G': case 'g': shift = 30; break;
	}
	if (shift)
		digits[len - 1] = '\0';
	r = parse_u64(digits, 0, UINT64_MAX >> shift, &v);
	if (r < 0)
		return r;
	v <<= shift;
	if (v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

int parse_duration(const char *s, int64_t *ret_ns)
{
	static const struct { char unit; int64_t ns; } units[] = {
		{ 's', 1000000000LL }, { 'm', 60 * 1000000000LL }, { 'h', 3600 * 1000000000LL },
		{ 'd', 86400 * 1000000000LL }, { 'w', 7 * 86400 * 1000000000LL },
	};
	char digits[32];
	size_t len = s ? strlen(s) : 0;
	uint64_t v;
	int r;

	if (len < 2 || len >= sizeof(digits))
		return -EINVAL;
	if (len > 2 && s[len - 2] == 'm' && s[len - 1] == 's') { /* milliseconds */
		memcpy(digits, s, len - 2);
		digits[len - 2] = '\0';
		r = parse_u64(digits, 0, (uint64_t)(INT64_MAX / 1000000), &v);
		if (r < 0)
			return r;
		*ret_ns = (int64_t)v * 1000000;
		return 0;
	}
	memcpy(digits, s, len - 1);
	digits[len - 1] = '\0';
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (s[len - 1] != units[i].unit)
			continue;
		r = parse_u64(digits, 0, (uint64_t)(INT64_MAX / units[i].ns), &v);
		if (r < 0)
			return r;
		*ret_ns = (int64_t)v * units[i].ns;
		return 0;
	}
	return -EINVAL;
}

int parse_scope(const char *s)
{
	size_t len = s ? strlen(s) : 0;

	if (len == 0 || len > 64 || s[0] == '.')
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return -EINVAL;
	}
	return 0;
}

int parse_since(const char *s, int64_t *ret_wall_ns)
{
	struct timespec ts;
	int64_t age;
	int r = parse_duration(s, &age);

	if (r < 0)
		return r;
	if (age <= 0)
		return -EINVAL;
	clock_gettime(CLOCK_REALTIME, &ts);
	*ret_wall_ns = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec - age;
	return 0;
}
