/*
 * registry.c -- the schema registry: stable ids for every schema version.
 *
 * Ids are kept in `<data_dir>/schemas/`, one file per version named
 * `<id, 10 digits>-<Type>.avsc` holding the version's canonical text. Opening:
 *   1. load every stored version (they stay decodable by id forever);
 *   2. read the .avsc files of schemas_dir in name order; a file whose canonical text equals a
 *      stored version of its type maps to that id; a new text becomes a new version with
 *      id = the highest id + 1, if it is compatible both ways with the type's current
 *      version (compat.c), and is stored (temp file, fdatasync, rename, fsync of the
 *      directory) before the registry is used;
 *   3. a type's newest ("latest") version is the one its .avsc file has now, or, for a
 *      type whose file is gone, its highest id.
 * So a restart, a new schema file or another listing order never changes an id.
 */
#include "events/events_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ev_registry {
    ev_schema **versions; /* sorted by id */
    size_t count, cap;
    json_t *latest; /* type -> id */
    bool read_only;
    char *store_dir; /* <data_dir>/schemas, or NULL */
};

static int add_version(ev_registry *reg, ev_schema *s)
{
    if (reg->count == reg->cap) {
        size_t ncap = reg->cap ? reg->cap * 2 : 32;
        ev_schema **p = realloc(reg->versions, ncap * sizeof *p);
        if (!p)
            return -ENOMEM;
        reg->versions = p;
        reg->cap = ncap;
    }
    size_t i = reg->count;
    while (i > 0 && reg->versions[i - 1]->id > s->id) {
        reg->versions[i] = reg->versions[i - 1];
        i--;
    }
    reg->versions[i] = s;
    reg->count++;
    return 0;
}

static ev_schema *find_id(const ev_registry *reg, uint32_t id)
{
    size_t lo = 0, hi = reg->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (reg->versions[mid]->id == id)
            return reg->versions[mid];
        if (reg->versions[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the files in dir ending in .avsc; *names_out is NULL-terminated. */
static int list_avsc(const char *dir, char ***names_out, size_t *count_out)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= 5 || strcmp(e->d_name + len - 5, ".avsc") != 0)
            continue;
        if (n + 1 >= cap) {
            cap = cap ? cap * 2 : 32;
            char **p = realloc(names, cap * sizeof *p);
            if (!p) {
                rc = -ENOMEM;
                break;
            }
            names = p;
        }
        names[n] = strdup(e->d_name);
        if (!names[n]) {
            rc = -ENOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc == 0 && n > 1)
        qsort(names, n, sizeof *names, cmp_names);
    if (rc != 0) {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        return rc;
    }
    *names_out = names;
    *count_out = n;
    return 0;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static int load_stored(ev_registry *reg, sk_error *err)
{
    char **names = NULL;
    size_t n = 0;
    int rc = list_avsc(reg->store_dir, &names, &n);
    if (rc == -ENOENT)
        return 0;
    if (rc)
        return sk_error_set(err, rc, "", "cannot list %s: %s", reg->store_dir, sk_strerror(rc));
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char *end;
        unsigned long id = strtoul(names[i], &end, 10);
        if (end == names[i] || *end != '-' || id == 0 || id > UINT32_MAX)
            continue;
        char path[4096], *text = NULL;
        size_t size = 0;
        snprintf(path, sizeof path, "%s/%s", reg->store_dir, names[i]);
        rc = ev_read_file(path, &text, &size);
        ev_schema *s = NULL;
        if (rc == 0)
            rc = ev_schema_parse(text, size, path, &s, err);
        else
            sk_error_set(err, rc, "", "cannot read %s: %s", path, sk_strerror(rc));
        free(text);
        if (rc == 0) {
            s->id = (uint32_t)id;
            if (find_id(reg, s->id)) {
                rc = sk_error_set(err, SK_ESCHEMA, "", "%s: schema id %u is stored twice", path,
                                  s->id);
                ev_schema_free(s);
            } else if ((rc = add_version(reg, s)) != 0) {
                ev_schema_free(s);
            }
        }
    }
    free_names(names, n);
    return rc;
}

static int store_version(const ev_registry *reg, const ev_schema *s, sk_error *err)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%010u-%s.avsc", reg->store_dir, s->id, s->type);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = fd < 0 ? -errno : 0;
    size_t len = strlen(s->canonical);
    if (rc == 0 && write(fd, s->canonical, len) != (ssize_t)len)
        rc = -EIO;
    if (rc == 0 && fdatasync(fd) < 0)
        rc = -errno;
    if (fd >= 0)
        close(fd);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc == 0)
        rc = ev_fsync_dir(reg->store_dir);
    if (rc) {
        unlink(tmp);
        return sk_error_set(err, rc, "", "cannot store schema %s as %s: %s", s->type, path,
                            sk_strerror(rc));
    }
    return 0;
}

static uint32_t max_id(const ev_registry *reg)
{
    return reg->count ? reg->versions[reg->count - 1]->id : 0;
}

static ev_schema *latest_of(const ev_registry *reg, const char *type)
{
    const json_t *id = json_object_get(reg->latest, type);
    if (id)
        return find_id(reg, (uint32_t)json_integer_value(id));
    for (size_t i = reg->count; i > 0; i--)
        if (strcmp(reg->versions[i - 1]->type, type) == 0)
            return reg->versions[i - 1];
    return NULL;
}

/* One source file: map it to a stored version, or make it a new one. */
static int add_source(ev_registry *reg, const char *path, json_t *seen, sk_error *err)
{
    char *text = NULL;
    size_t size = 0;
    int rc = ev_read_file(path, &text, &size);
    if (rc)
        return sk_error_set(err, rc, "", "cannot read %s: %s", path, sk_strerror(rc));
    ev_schema *s = NULL;
    rc = ev_schema_parse(text, size, path, &s, err);
    free(text);
    if (rc)
        return rc;
    if (json_object_get(seen, s->type)) {
        rc = sk_error_set(err, SK_ESCHEMA, "", "%s: type %s is already defined by %s", path,
                          s->type, json_string_value(json_object_get(seen, s->type)));
        ev_schema_free(s);
        return rc;
    }
    json_object_set_new(seen, s->type, json_string(path));
    for (size_t i = 0; i < reg->count; i++) {
        const ev_schema *v = reg->versions[i];
        if (strcmp(v->type, s->type) == 0 && strcmp(v->canonical, s->canonical) == 0) {
            json_object_set_new(reg->latest, s->type, json_integer(v->id));
            ev_schema_free(s);
            return 0;
        }
    }
    const ev_schema *prev = latest_of(reg, s->type);
    if (prev && (rc = ev_schema_check_change(prev, s, err)) != 0) {
        sk_error why = {0};
        if (err)
            why = *err;
        sk_error_set(err, rc, why.field, "%s: %s (stored version: id %u)", path, why.message,
                     prev->id);
        ev_schema_free(s);
        return rc;
    }
    s->id = max_id(reg) + 1;
    if (reg->store_dir && !reg->read_only && (rc = store_version(reg, s, err)) != 0) {
        ev_schema_free(s);
        return rc;
    }
    rc = add_version(reg, s);
    if (rc) {
        ev_schema_free(s);
        return rc;
    }
    json_object_set_new(reg->latest, s->type, json_integer(s->id));
    return 0;
}

static int load_sources(ev_registry *reg, const char *schemas_dir, sk_error *err)
{
    char **names = NULL;
    size_t n = 0;
    int rc = list_avsc(schemas_dir, &names, &n);
    if (rc)
        return sk_error_set(err, rc, "", "cannot list schema directory %s: %s", schemas_dir,
                            sk_strerror(rc));
    json_t *seen = json_object();
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", schemas_dir, names[i]);
        rc = add_source(reg, path, seen, err);
    }
    json_decref(seen);
    free_names(names, n);
    return rc;
}

static int registry_open(const char *schemas_dir, const char *data_dir, bool read_only,
                         ev_registry **out, sk_error *err)
{
    ev_registry *reg = calloc(1, sizeof *reg);
    if (!reg)
        return -ENOMEM;
    reg->latest = json_object();
    reg->read_only = read_only;
    int rc = 0;
    if (data_dir) {
        size_t n = strlen(data_dir) + sizeof "/schemas";
        reg->store_dir = malloc(n);
        if (!reg->store_dir)
            rc = -ENOMEM;
        else
            snprintf(reg->store_dir, n, "%s/schemas", data_dir);
        if (rc == 0 && !read_only && mkdir(data_dir, 0755) < 0 && errno != EEXIST)
            rc = sk_error_set(err, -errno, "", "cannot create data directory %s: %s", data_dir,
                              sk_strerror(-errno));
        if (rc == 0 && !read_only && mkdir(reg->store_dir, 0755) < 0 && errno != EEXIST)
            rc = sk_error_set(err, -errno, "", "cannot create %s: %s", reg->store_dir,
                              sk_strerror(-errno));
        if (rc == 0)
            rc = load_stored(reg, err);
    }
    if (rc == 0 && schemas_dir)
        rc = load_sources(reg, schemas_dir, err);
    if (rc) {
        ev_registry_destroy(reg);
        return rc;
    }
    *out = reg;
    return 0;
}

int ev_registry_open(const char *schemas_dir, const char *data_dir, ev_registry **out,
                     sk_error *err)
{
    return registry_open(schemas_dir, data_dir, false, out, err);
}

int ev_registry_open_readonly(const char *schemas_dir, const char *data_dir, ev_registry **out,
                              sk_error *err)
{
    return registry_open(schemas_dir, data_dir, true, out, err);
}

void ev_registry_destroy(ev_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->count; i++)
        ev_schema_free(reg->versions[i]);
    free(reg->versions);
    json_decref(reg->latest);
    free(reg->store_dir);
    free(reg);
}

size_t ev_registry_count(const ev_registry *reg)
{
    return reg->count;
}

static void fill_info(const ev_registry *reg, const ev_schema *s, ev_schema_info *out)
{
    const ev_schema *latest = latest_of(reg, s->type);
    out->id = s->id;
    out->type = s->type;
    out->schema_json = s->canonical;
    out->latest = latest == s;
}

int ev_registry_at(const ev_registry *reg, size_t index, ev_schema_info *out)
{
    if (index >= reg->count)
        return SK_ENOTFOUND;
    fill_info(reg, reg->versions[index], out);
    return 0;
}

int ev_registry_find(const ev_registry *reg, uint32_t id, ev_schema_info *out)
{
    const ev_schema *s = find_id(reg, id);
    if (!s)
        return SK_ENOTFOUND;
    fill_info(reg, s, out);
    return 0;
}

int ev_registry_latest(const ev_registry *reg, const char *type, uint32_t *id_out)
{
    const ev_schema *s = latest_of(reg, type);
    if (!s)
        return SK_ENOTFOUND;
    *id_out = s->id;
    return 0;
}

const ev_schema *ev_registry_schema(const ev_registry *reg, uint32_t id)
{
    return find_id(reg, id);
}

const ev_schema *ev_registry_newest(const ev_registry *reg, const char *type)
{
    return latest_of(reg, type);
}
