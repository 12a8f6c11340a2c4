/*
 * A stand-in for the TTHighSpeedDownloader core, for tests of the Python side only.
 *
 * It exports the C ABI of docs/architecture.md but downloads nothing: a started downloader
 * runs a thread that emits, for each task, startOne, FAKECORE_UPDATES updates (one every
 * FAKECORE_DELAY_MS milliseconds) and endOne, between start and end.  It keeps the
 * contract's promises that the Python side relies on: events of one downloader come from
 * one thread, in order; stop_download joins that thread, emits "Download stopped" and end
 * (when a run was going on), and after it returns the callback is never called again.
 * With task_count 0 or a tasks_json without "url", creation fails with a last error.
 *
 * Built with -DGO_ERA it exports only the Go-era camel-case layout (startDownload with 10
 * arguments, getDownloader with 9, startDownload_ID, ..., no tthsd_* additions), to test
 * the Python side's fallback for such libraries.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef GO_ERA
#define API static __attribute__((unused))
#else
#define API
#endif

typedef void (*tthsd_callback)(const char *event_json, const char *msg_json);

#define MAX_DL 256

struct dl {
    bool used, running, paused, stop, started_thread;
    int tasks;
    tthsd_callback cb;
    pthread_t thread;
    pthread_mutex_t mu;
};

static struct dl dls[MAX_DL];
static pthread_mutex_t registry = PTHREAD_MUTEX_INITIALIZER;
static __thread char last_error[256];

static int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

static void fail(const char *why) { snprintf(last_error, sizeof last_error, "%s", why); }
static void ok(void) { last_error[0] = 0; }

static void emit(struct dl *d, const char *type, const char *show, const char *id,
                 const char *msg) {
    char ev[256];
    snprintf(ev, sizeof ev, "{\"Type\":\"%s\",\"Name\":\"%s\",\"ShowName\":\"%s\",\"ID\":\"%s\"}",
             type, type, show, id);
    d->cb(ev, msg);
}

static bool stopping(struct dl *d) {
    for (;;) {
        pthread_mutex_lock(&d->mu);
        bool stop = d->stop, paused = d->paused;
        pthread_mutex_unlock(&d->mu);
        if (stop) return true;
        if (!paused) return false;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void *run(void *arg) {
    struct dl *d = arg;
    int updates = env_int("FAKECORE_UPDATES", 3), delay = env_int("FAKECORE_DELAY_MS", 1);
    char msg[512], id[32], show[32];
    emit(d, "start", "Global", "", "{}");
    for (int i = 0; i < d->tasks && !stopping(d); i++) {
        snprintf(id, sizeof id, "task%d", i + 1);
        snprintf(show, sizeof show, "file%d", i + 1);
        snprintf(msg, sizeof msg,
                 "{\"URL\":\"http://fake/%d\",\"SavePath\":\"f%d\",\"ShowName\":\"%s\","
                 "\"Index\":%d,\"Total\":%d}", i + 1, i + 1, show, i + 1, d->tasks);
        emit(d, "startOne", show, id, msg);
        for (int u = 1; u <= updates && !stopping(d); u++) {
            struct timespec ts = {delay / 1000, (delay % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            snprintf(msg, sizeof msg, "{\"Downloaded\":%d,\"Total\":%d,\"Speed\":1.5}", u * 100,
                     updates * 100);
            emit(d, "update", show, id, msg);
        }
        if (stopping(d)) break;
        snprintf(msg, sizeof msg,
                 "{\"URL\":\"http://fake/%d\",\"SavePath\":\"f%d\",\"ShowName\":\"%s\","
                 "\"Index\":%d,\"Total\":%d,\"Success\":true}", i + 1, i + 1, show, i + 1,
                 d->tasks);
        emit(d, "endOne", show, id, msg);
    }
    pthread_mutex_lock(&d->mu);
    bool stopped = d->stop;
    d->running = false;
    pthread_mutex_unlock(&d->mu);
    if (!stopped) emit(d, "end", "Global", "", "{}");
    return NULL;
}

static struct dl *lookup(int id) {
    if (id <= 0 || id > MAX_DL) return NULL;
    struct dl *d = &dls[id - 1];
    return d->used ? d : NULL;
}

static int create(const char *tasks_json, int task_count, tthsd_callback cb) {
    if (!tasks_json || task_count <= 0 || !strstr(tasks_json, "\"url\"") || !cb) {
        fail("invalid tasks");
        return -1;
    }
    pthread_mutex_lock(&registry);
    for (int i = 0; i < MAX_DL; i++) {
        if (!dls[i].used) {
            memset(&dls[i], 0, sizeof dls[i]);
            pthread_mutex_init(&dls[i].mu, NULL);
            dls[i].used = true;
            dls[i].tasks = task_count;
            dls[i].cb = cb;
            pthread_mutex_unlock(&registry);
            ok();
            return i + 1;
        }
    }
    pthread_mutex_unlock(&registry);
    fail("too many downloaders");
    return -1;
}

static int start(int id) {
    struct dl *d = lookup(id);
    if (!d) { fail("unknown id"); return -1; }
    pthread_mutex_lock(&d->mu);
    if (d->running) { pthread_mutex_unlock(&d->mu); fail("already running"); return -1; }
    if (d->started_thread) pthread_join(d->thread, NULL);
    d->running = true;
    d->started_thread = true;
    pthread_create(&d->thread, NULL, run, d);
    pthread_mutex_unlock(&d->mu);
    ok();
    return 0;
}

API int get_downloader(const char *tasks_json, int task_count, int thread_count, int chunk_size_mb,
                   tthsd_callback cb, bool use_callback_url, const char *user_agent,
                   const char *remote_callback_url, const bool *use_socket,
                   const char *headers_json) {
    (void)thread_count; (void)chunk_size_mb; (void)use_callback_url; (void)user_agent;
    (void)remote_callback_url; (void)use_socket; (void)headers_json;
    return create(tasks_json, task_count, cb);
}

API int start_download(const char *tasks_json, int task_count, int thread_count, int chunk_size_mb,
                   tthsd_callback cb, bool use_callback_url, const char *user_agent,
                   const char *remote_callback_url, const bool *use_socket,
                   const bool *is_multiple, const char *headers_json) {
    (void)is_multiple;
    int id = get_downloader(tasks_json, task_count, thread_count, chunk_size_mb, cb,
                            use_callback_url, user_agent, remote_callback_url, use_socket,
                            headers_json);
    if (id > 0) start(id);
    return id;
}

API int start_download_id(int id) { return start(id); }
API int start_multiple_downloads_id(int id) { return start(id); }

static int set_paused(int id, bool paused) {
    struct dl *d = lookup(id);
    if (!d) { fail("unknown id"); return -1; }
    pthread_mutex_lock(&d->mu);
    d->paused = paused;
    pthread_mutex_unlock(&d->mu);
    emit(d, "msg", "Global", "", paused ? "{\"Text\":\"Download paused\"}"
                                        : "{\"Text\":\"Download resumed\"}");
    ok();
    return 0;
}

API int pause_download(int id) { return set_paused(id, true); }
API int resume_download(int id) { return set_paused(id, false); }

API int stop_download(int id) {
    pthread_mutex_lock(&registry);
    struct dl *d = lookup(id);
    if (!d) { pthread_mutex_unlock(&registry); fail("unknown id"); return -1; }
    d->used = false; /* released: later calls with the id fail */
    pthread_mutex_unlock(&registry);
    pthread_mutex_lock(&d->mu);
    bool was_running = d->running;
    d->stop = true;
    pthread_mutex_unlock(&d->mu);
    if (d->started_thread) pthread_join(d->thread, NULL);
    emit(d, "msg", "Global", "", "{\"Text\":\"Download stopped\"}");
    if (was_running) emit(d, "end", "Global", "", "{}");
    ok();
    return 0;
}

API int set_speed_limit(int id, uint64_t bps) { (void)bps; if (!lookup(id)) { fail("unknown id"); return -1; } ok(); return 0; }
API int set_proxy(int id, const char *url) { (void)url; if (!lookup(id)) { fail("unknown id"); return -1; } ok(); return 0; }
API int set_retry_config(int id, uint32_t n, uint64_t a, uint64_t b) { (void)n; (void)a; (void)b; if (!lookup(id)) { fail("unknown id"); return -1; } ok(); return 0; }
API int tthsd_set_timeouts(int id, uint64_t a, uint64_t b) { (void)a; (void)b; if (!lookup(id)) { fail("unknown id"); return -1; } ok(); return 0; }

API char *get_performance_stats(int id) {
    struct dl *d = lookup(id);
    char *s = malloc(64);
    if (!d) strcpy(s, "{}");
    else snprintf(s, 64, "{\"state\":\"%s\",\"tasks\":[]}", d->running ? "running" : "finished");
    return s;
}

API void free_string(char *s) { free(s); }
API const char *tthsd_version(void) { return "0.0.0-fake"; }
/* FAKECORE_ABI_VERSION: pretend to be a core of another contract (the lookup tests). */
API int tthsd_abi_version(void) { return env_int("FAKECORE_ABI_VERSION", 1); }

API int tthsd_last_error(char *buf, size_t len) {
    size_t n = strlen(last_error);
    if (buf && len) { snprintf(buf, len, "%s", last_error); }
    return (int)n;
}

#ifdef GO_ERA
int startDownload(const char *tasks_json, int task_count, int thread_count, int chunk_size_mb,
                  tthsd_callback cb, bool use_callback_url, const char *user_agent,
                  const char *remote_callback_url, const bool *use_socket,
                  const bool *is_multiple) {
    return start_download(tasks_json, task_count, thread_count, chunk_size_mb, cb,
                          use_callback_url, user_agent, remote_callback_url, use_socket,
                          is_multiple, NULL);
}
int getDownloader(const char *tasks_json, int task_count, int thread_count, int chunk_size_mb,
                  tthsd_callback cb, bool use_callback_url, const char *user_agent,
                  const char *remote_callback_url, const bool *use_socket) {
    return get_downloader(tasks_json, task_count, thread_count, chunk_size_mb, cb,
                          use_callback_url, user_agent, remote_callback_url, use_socket, NULL);
}
int startDownload_ID(int id) { return start_download_id(id); }
int startMultipleDownloads_ID(int id) { return start_multiple_downloads_id(id); }
int pauseDownload(int id) { return pause_download(id); }
int resumeDownload(int id) { return resume_download(id); }
int stopDownload(int id) { return stop_download(id); }
#endif
