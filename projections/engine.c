/*
 * engine.c -- the read models of a data directory: loading them, their generations on
 * disk, their status, and the requests other layers make (rebuild, resume, skip, the
 * live database for queries, waiting for a position).
 *
 * At open, for each model file: the generations DIR/NAME.<n>.db are listed; the newest
 * one marked live serves, every other one (an unfinished rebuild, a superseded
 * generation) is removed; a model with none gets generation 1, live at once, empty. If
 * the live generation was built from another version of the file (its file_hash
 * differs), a rebuild starts beside it, and it keeps answering until the rebuild is done.
 */
#include "projections/projections_int.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *proj_state_name(proj_state state)
{
    switch (state) {
    case PROJ_RUNNING:
        return "running";
    case PROJ_REBUILDING:
        return "rebuilding";
    case PROJ_FAILED:
        return "failed";
    case PROJ_STOPPED:
        return "stopped";
    }
    return "unknown";
}

/* One process applies a data directory's projections: DIR/LOCK, held (flock) while open. */
static int lock_dir(const char *dir, sk_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/LOCK", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return sk_error_set(err, -errno, "", "cannot open %s", path);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return sk_error_set(err, SK_EBUSY, "",
                            "%s is in use: another process runs these projections (stop it, or "
                            "use skaldctl projection --server)",
                            dir);
    }
    return fd;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_model(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return d->d_name[0] != '.' && n > 4 && strcmp(d->d_name + n - 4, ".sql") == 0;
}

/* Generation numbers of model in dir ("NAME.<digits>.db"), ascending; *count_out. */
static uint64_t *list_generations(const char *dir, const char *model, size_t *count_out)
{
    DIR *d = opendir(dir);
    uint64_t *nums = NULL;
    size_t count = 0, mlen = strlen(model);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        char *end = NULL;
        if (strncmp(n, model, mlen) != 0 || n[mlen] != '.' || n[mlen + 1] < '0' ||
            n[mlen + 1] > '9')
            continue;
        uint64_t num = strtoull(n + mlen + 1, &end, 10);
        if (!end || strcmp(end, ".db") != 0)
            continue;
        uint64_t *grown = realloc(nums, (count + 1) * sizeof *grown);
        if (!grown)
            break;
        nums = grown;
        size_t i = count++;
        while (i > 0 && nums[i - 1] > num) {
            nums[i] = nums[i - 1];
            i--;
        }
        nums[i] = num;
    }
    if (d)
        closedir(d);
    *count_out = count;
    return nums;
}

static void remove_generation(const char *dir, const char *model, uint64_t number)
{
    char path[4096], extra[4200];
    proj_gen_path(dir, model, number, path, sizeof path);
    unlink(path);
    snprintf(extra, sizeof extra, "%s-wal", path);
    unlink(extra);
    snprintf(extra, sizeof extra, "%s-shm", path);
    unlink(extra);
}

static json_t *meta_json(proj_gen *g, const char *key)
{
    char *text = proj_gen_meta(g, key);
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    return json_is_array(v) ? v : (json_decref(v), json_array());
}

/* Finds the live generation (newest marked live), removing the others. */
static int open_live(proj *p, sk_error *err)
{
    const char *dir = p->engine->dir, *name = p->model->name;
    size_t count = 0;
    uint64_t *nums = list_generations(dir, name, &count);
    int rc = 0;
    for (size_t i = count; i-- > 0;) {
        proj_gen *g = NULL;
        if (!p->live && proj_gen_open(dir, p->model, nums[i], false, &g, err) == 0) {
            char *live = proj_gen_meta(g, "live");
            if (live && strcmp(live, "1") == 0)
                p->live = g;
            else
                proj_gen_close(g, false);
            free(live);
            if (p->live)
                continue;
        }
        remove_generation(dir, name, nums[i]);
    }
    uint64_t next = count ? nums[count - 1] + 1 : 1;
    free(nums);
    memset(err, 0, sizeof *err);
    if (!p->live) {
        rc = proj_gen_open(dir, p->model, next, true, &p->live, err);
        if (rc == 0)
            rc = proj_gen_set_meta_u64(p->live, "live", 1);
        if (rc)
            return rc;
    }
    p->live_next = p->live->next_position;
    p->skipped = meta_json(p->live, "skipped");
    p->history = meta_json(p->live, "history");
    if (!p->skipped || !p->history)
        return -ENOMEM;
    if (count == 0)
        proj_note(p, "created", 0);
    return 0;
}

/* A live generation built from another version of the file is rebuilt. */
static int check_file_hash(proj *p, sk_error *err)
{
    char *hash = proj_gen_meta(p->live, "file_hash");
    char want[24];
    snprintf(want, sizeof want, "%016" PRIx64, p->model->hash);
    bool same = hash && strcmp(hash, want) == 0;
    free(hash);
    return same ? 0 : proj_start_rebuild(p, "the model file changed: rebuilding", err);
}

static int open_model(proj_engine *e, proj *p, const char *path, sk_error *err)
{
    p->engine = e;
    p->want_skip = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->applied, NULL);
    p->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->ctl_fd < 0)
        return sk_error_set(err, -errno, "", "no eventfd for a projection worker");
    int rc = proj_model_load(path, e->cfg.events, &p->model, err);
    if (rc == 0)
        rc = open_live(p, err);
    if (rc == 0)
        rc = check_file_hash(p, err);
    return rc;
}

static void close_model(proj *p)
{
    proj_worker_stop(p);
    p->engine->src.close(p->reader);
    p->reader = NULL;
    proj_gen_close(p->building, false);
    proj_gen_close(p->live, false);
    proj_model_free(p->model);
    json_decref(p->skipped);
    json_decref(p->history);
    if (p->ctl_fd >= 0)
        close(p->ctl_fd);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->applied);
}

void proj_engine_close(proj_engine *e)
{
    if (!e)
        return;
    for (size_t i = 0; e->models && i < e->count; i++)
        proj_worker_stop(&e->models[i]);
    for (size_t i = 0; e->models && i < e->count; i++)
        close_model(&e->models[i]);
    free(e->models);
    free(e->dir);
    if (e->lock_fd >= 0)
        close(e->lock_fd); /* releases the lock */
    free(e);
}

int proj_engine_open(const proj_config *cfg, proj_engine **out, sk_error *err)
{
    proj_engine *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    e->cfg = *cfg;
    if (!cfg->log && !cfg->source) { /* a caller's bug: say so rather than crash later */
        free(e);
        return sk_error_set(err, SK_EBADINPUT, "", "projections need a log or a source");
    }
    if (cfg->source)
        e->src = *cfg->source;
    else
        proj_source_log(cfg->log, &e->src);
    e->cfg.source = &e->src;
    if (!e->cfg.batch_events_max)
        e->cfg.batch_events_max = 4096;
    e->dir = strdup(cfg->dir);
    if (!e->dir || (mkdir(cfg->dir, 0755) != 0 && errno != EEXIST)) {
        free(e->dir);
        free(e);
        return sk_error_set(err, -errno, "", "cannot create %s", cfg->dir);
    }
    e->cfg.dir = e->dir;
    e->cfg.models_dir = NULL; /* borrowed during open only */
    e->lock_fd = lock_dir(e->dir, err);
    if (e->lock_fd < 0) {
        int rc = e->lock_fd;
        free(e->dir);
        free(e);
        return rc;
    }
    struct dirent **names = NULL;
    int n = scandir(cfg->models_dir, &names, is_model, by_name);
    if (n < 0) {
        int rc = sk_error_set(err, errno ? -errno : -EIO, "", "cannot list the models in %s",
                              cfg->models_dir);
        proj_engine_close(e);
        return rc;
    }
    int rc = 0;
    e->models = calloc((size_t)n + 1, sizeof *e->models);
    if (!e->models)
        rc = -ENOMEM;
    for (int i = 0; i < n; i++) {
        if (rc == 0 && e->models) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", cfg->models_dir, names[i]->d_name);
            e->count++;
            rc = open_model(e, &e->models[i], path, err);
        }
        free(names[i]);
    }
    free(names);
    if (rc != 0) {
        proj_engine_close(e);
        return rc;
    }
    *out = e;
    return 0;
}

int proj_engine_start(proj_engine *e, sk_error *err)
{
    for (size_t i = 0; i < e->count; i++) {
        int rc = proj_worker_start(&e->models[i], err);
        if (rc)
            return rc;
    }
    return 0;
}

int proj_engine_catch_up(proj_engine *e, sk_error *err)
{
    for (size_t i = 0; i < e->count; i++) {
        int rc = proj_worker_catch_up(&e->models[i], err);
        if (rc)
            return rc;
    }
    return 0;
}

size_t proj_count(const proj_engine *e)
{
    return e->count;
}

const char *proj_name(const proj_engine *e, size_t index)
{
    return index < e->count ? e->models[index].model->name : NULL;
}

static proj *find(proj_engine *e, const char *name)
{
    for (size_t i = 0; name && i < e->count; i++)
        if (strcmp(e->models[i].model->name, name) == 0)
            return &e->models[i];
    return NULL;
}

static json_t *failure_json(const proj *p)
{
    if (p->state != PROJ_FAILED)
        return json_null();
    return json_pack("{s:I, s:s, s:s, s:s}", "position", (json_int_t)p->failure.position, "type",
                     p->failure.type, "stream_id", p->failure.stream_id, "message",
                     p->failure.message);
}

json_t *proj_status_json(proj_engine *e, const char *name)
{
    proj *p = find(e, name);
    if (!p)
        return NULL;
    uint64_t durable = e->src.head(e->src.ctx);
    pthread_mutex_lock(&p->mu);
    char hash[24];
    snprintf(hash, sizeof hash, "%016" PRIx64, p->model->hash);
    uint64_t lag = durable > p->live_next ? durable - p->live_next : 0;
    double lag_s = 0;
    if (lag > 0 && p->last_occurred_us > 0)
        lag_s = (double)(ev_now_us() - p->last_occurred_us) / 1e6;
    json_t *rebuild = p->building
                          ? json_pack("{s:I, s:I}", "generation", (json_int_t)p->building->number,
                                      "position", (json_int_t)p->building_next - 1)
                          : json_null();
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:o, s:s, s:o, s:o, s:o}", "name",
                          p->model->name, "state", proj_state_name(p->state), "generation",
                          (json_int_t)p->live->number, "position", (json_int_t)p->live_next - 1,
                          "lag_events", (json_int_t)lag, "lag_seconds", lag_s < 0 ? 0 : lag_s,
                          "events_per_s", p->rate, "last_error", failure_json(p), "file_hash", hash,
                          "skipped", json_deep_copy(p->skipped), "history",
                          json_deep_copy(p->history), "rebuild", rebuild);
    pthread_mutex_unlock(&p->mu);
    return o;
}

typedef enum request_kind { REQUEST_REBUILD, REQUEST_RESUME, REQUEST_SKIP } request_kind;

/* Checks what the model's state allows, sets the worker's flag under p->mu, wakes it. */
static int request(proj_engine *e, const char *name, request_kind kind, uint64_t position,
                   sk_error *err)
{
    proj *p = find(e, name);
    if (!p)
        return sk_error_set(err, SK_ENOTFOUND, "name", "no projection named %s", name);
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    if (kind == REQUEST_REBUILD && (p->building || p->want_rebuild))
        rc = sk_error_set(err, SK_EBUSY, "", "a rebuild of %s is already running", name);
    else if (kind != REQUEST_REBUILD && p->state != PROJ_FAILED)
        rc = sk_error_set(err, SK_ECONFLICT, "", "%s is %s, not failed", name,
                          proj_state_name(p->state));
    else if (kind == REQUEST_SKIP && p->failure.position != position)
        rc = sk_error_set(err, SK_ECONFLICT, "position",
                          "%s failed at position %" PRIu64 ", not %" PRIu64, name,
                          p->failure.position, position);
    else if (kind == REQUEST_REBUILD)
        p->want_rebuild = true;
    else if (kind == REQUEST_RESUME)
        p->want_resume = true;
    else
        p->want_skip = (int64_t)position;
    pthread_mutex_unlock(&p->mu);
    if (rc == 0)
        proj_worker_poke(p);
    return rc;
}

int proj_rebuild(proj_engine *e, const char *name, sk_error *err)
{
    return request(e, name, REQUEST_REBUILD, 0, err);
}

int proj_resume(proj_engine *e, const char *name, sk_error *err)
{
    return request(e, name, REQUEST_RESUME, 0, err);
}

int proj_skip(proj_engine *e, const char *name, uint64_t position, sk_error *err)
{
    return request(e, name, REQUEST_SKIP, position, err);
}

int proj_live_db(proj_engine *e, const char *name, char *path, size_t size, uint64_t *generation)
{
    proj *p = find(e, name);
    if (!p)
        return SK_ENOTFOUND;
    pthread_mutex_lock(&p->mu);
    snprintf(path, size, "%s", p->live->path);
    *generation = p->live->number;
    pthread_mutex_unlock(&p->mu);
    return 0;
}

int proj_wait_applied(proj_engine *e, const char *name, uint64_t position, int timeout_ms,
                      int64_t *applied_out)
{
    proj *p = find(e, name);
    if (!p)
        return SK_ENOTFOUND;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    pthread_mutex_lock(&p->mu);
    while (p->live_next <= position && rc == 0)
        if (pthread_cond_timedwait(&p->applied, &p->mu, &deadline) == ETIMEDOUT)
            rc = p->live_next > position ? 0 : -ETIMEDOUT;
    *applied_out = (int64_t)p->live_next - 1;
    pthread_mutex_unlock(&p->mu);
    return rc;
}
