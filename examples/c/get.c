/* get.c: download one URL with the TTHSD core and wait for the end of the run. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "tthsd.h"

static volatile int ended = 0;

static void on_event(const char *event_json, const char *msg_json) {
    /* Runs on the core's event thread; the strings are valid during the call only. */
    if (strstr(event_json, "\"Type\":\"end\"")) ended = 1;
    else if (strstr(event_json, "\"Type\":\"err\"")) fprintf(stderr, "error: %s\n", msg_json);
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s URL PATH\n", argv[0]); return 2; }
    char tasks[4096];
    snprintf(tasks, sizeof tasks, "[{\"url\":\"%s\",\"save_path\":\"%s\"}]", argv[1], argv[2]);
    bool parallel = true;
    int id = start_download(tasks, 1, 16, 1, on_event, false, NULL, NULL, NULL, &parallel, NULL);
    if (id < 0) {
        char why[512];
        tthsd_last_error(why, sizeof why);
        fprintf(stderr, "refused: %s\n", why);
        return 1;
    }
    while (!ended) usleep(50 * 1000);
    char *stats = get_performance_stats(id);   /* JSON; per task "contiguous" too */
    printf("%s\n", stats);
    free_string(stats);
    stop_download(id);                          /* releases the id */
    return 0;
}
