/* SPDX-License-Identifier: MIT */
/* A rule as a user writes it, for the tests of the rules; after <cmocka.h> and "policy.h". */
#ifndef NT_TEST_TESTRULE_H
#define NT_TEST_TESTRULE_H

#include <stdio.h>

/* The pattern must parse, or the test fails. */
static inline struct policy_rule rule(int64_t id, const char *pattern, uint8_t mode,
				      const char *scope)
{
	struct policy_rule r = { .id = id, .mode = mode };
	const char *why = NULL;

	if (policy_parse_pattern(pattern, r.name, &r.match, &why) != 0)
		fail_msg("pattern \"%s\" rejected: %s", pattern, why ? why : "(no reason)");
	snprintf(r.scope, sizeof(r.scope), "%s", scope);
	return r;
}

#endif /* NT_TEST_TESTRULE_H */
