// SPDX-License-Identifier: MIT
/* schema/nettrail.sql, embedded in the binary as a NUL-terminated string. */
__asm__(".section .rodata\n"
	".global nt_schema_sql\n"
	".type nt_schema_sql, @object\n"
	"nt_schema_sql:\n"
	".incbin \"schema/nettrail.sql\"\n"
	".byte 0\n"
	".size nt_schema_sql, . - nt_schema_sql\n"
	".previous\n");
