/*
 * getaddrinfo() as a musl program does it: musl's resolver asks every nameserver of
 * resolv.conf at once, from one socket, with one id. Prints the IPv4 addresses found.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	struct addrinfo hints, *res, *ai;
	char text[INET_ADDRSTRLEN];
	int r;

	if (argc != 2) {
		fprintf(stderr, "usage: musl_resolve NAME\n");
		return 2;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	r = getaddrinfo(argv[1], NULL, &hints, &res);
	if (r != 0) {
		printf("error %s\n", gai_strerror(r));
		return 1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ai->ai_addr;

		printf("%s\n", inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)));
	}
	freeaddrinfo(res);
	return 0;
}
