/* SPDX-License-Identifier: MIT */
#ifndef NT_UTF8_H
#define NT_UTF8_H

#include <stddef.h>

/*
 * The UTF-8 sequence at s (n bytes left, n >= 1): its length when well-formed, else 0 with
 * *bad set to the length of its maximal ill-formed subpart (at least 1), which stands for one
 * U+FFFD as the Unicode standard recommends (and Python and browsers do).
 */
static inline size_t utf8_next(const unsigned char *s, size_t n, size_t *bad)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t need;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		need = 1;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 2;
		lo = c == 0xe0 ? 0xa0 : 0x80; /* no overlong forms */
		hi = c == 0xed ? 0x9f : 0xbf; /* no surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 3;
		lo = c == 0xf0 ? 0x90 : 0x80;
		hi = c == 0xf4 ? 0x8f : 0xbf; /* nothing past U+10FFFF */
	} else {
		*bad = 1;
		return 0;
	}
	for (size_t i = 1; i <= need; i++) {
		if (i >= n || s[i] < lo || s[i] > hi) {
			*bad = i;
			return 0;
		}
		lo = 0x80;
		hi = 0xbf;
	}
	return need + 1;
}

#endif /* NT_UTF8_H */
