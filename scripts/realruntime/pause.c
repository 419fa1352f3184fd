/*
 * Minimal pod "pause" (infra) process for the offline test images.
 *
 * Like the Kubernetes pause container: sleep until SIGINT or SIGTERM, then
 * exit 0; as PID 1 of a shared PID namespace also reap orphaned children.
 * Built with `gcc -static -Os -s -o pause pause.c` by build_images.py.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) { (void)sig; _exit(0); }

static void on_chld(int sig)
{
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_chld;
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    for (;;)
        pause();
    return 0;
}
