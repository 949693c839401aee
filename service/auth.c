/*
 * auth.c -- bearer tokens from a file: "TOKEN ROLE[,ROLE...] PRINCIPAL" per line, '#'
 * comments. A lookup compares the presented token with every known token, each over the
 * full stored length, so the time taken does not depend on how much of a token matched.
 */
#include "service/serve_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TOKEN_MAX 256

typedef struct token {
    char secret[TOKEN_MAX + 1];
    size_t len;
    unsigned roles;
    char principal[128];
    unsigned line; /* of the tokens file, for messages */
} token;

struct svc_auth {
    token *tokens;
    size_t count;
};

static int parse_roles(const char *text, unsigned *out)
{
    *out = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", text);
    char *save = NULL;
    for (char *r = strtok_r(buf, ",", &save); r; r = strtok_r(NULL, ",", &save)) {
        if (strcmp(r, "producer") == 0)
            *out |= SVC_ROLE_PRODUCER;
        else if (strcmp(r, "reader") == 0)
            *out |= SVC_ROLE_READER;
        else if (strcmp(r, "admin") == 0)
            *out |= SVC_ROLE_ADMIN;
        else
            return -1;
    }
    return *out ? 0 : -1;
}

static int parse_line(char *line, token *t)
{
    char secret[TOKEN_MAX + 2], roles[128], principal[128];
    int n = sscanf(line, "%257s %127s %127s", secret, roles, principal);
    if (n != 3 || strlen(secret) > TOKEN_MAX || strlen(secret) < 16)
        return -1;
    if (parse_roles(roles, &t->roles) != 0)
        return -1;
    snprintf(t->secret, sizeof t->secret, "%s", secret);
    t->len = strlen(secret);
    snprintf(t->principal, sizeof t->principal, "%s", principal);
    return 0;
}

/* A token listed twice would silently take the later line's roles and principal: refused,
 * naming both lines (never the token). */
static int refuse_duplicate(const svc_auth *auth, const token *t, const char *path, unsigned lineno,
                            sk_error *err)
{
    for (size_t i = 0; i < auth->count; i++)
        if (auth->tokens[i].len == t->len && memcmp(auth->tokens[i].secret, t->secret, t->len) == 0)
            return sk_error_set(err, SK_EBADINPUT, "",
                                "%s line %u: the token of line %u again; a token may be listed "
                                "once (which roles and principal would it have?)",
                                path, lineno, auth->tokens[i].line);
    return 0;
}

int svc_auth_load(const char *path, svc_auth **out, sk_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sk_error_set(err, -errno, "", "cannot read tokens file %s: %s", path,
                            strerror(errno));
    svc_auth *auth = calloc(1, sizeof *auth);
    char line[1024];
    unsigned lineno = 0;
    int rc = auth ? 0 : -ENOMEM;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line + strspn(line, " \t");
        if (*p == '#' || *p == '\n' || *p == '\0')
            continue;
        token *grown = realloc(auth->tokens, (auth->count + 1) * sizeof *grown);
        if (!grown) {
            rc = -ENOMEM;
            break;
        }
        auth->tokens = grown;
        token *t = &auth->tokens[auth->count];
        if (parse_line(p, t) != 0)
            rc = sk_error_set(err, SK_EBADINPUT, "",
                              "%s line %u: expected 'TOKEN ROLE[,ROLE] PRINCIPAL' with a token "
                              "of 16..%d characters and roles producer, reader, admin",
                              path, lineno, TOKEN_MAX);
        else if ((rc = refuse_duplicate(auth, t, path, lineno, err)) == 0) {
            t->line = lineno;
            auth->count++;
        }
    }
    fclose(f);
    if (rc == 0 && auth->count == 0)
        rc = sk_error_set(err, SK_EBADINPUT, "", "tokens file %s holds no token", path);
    struct stat st;
    if (rc == 0 && stat(path, &st) == 0 && (st.st_mode & 077))
        svc_log(SK_LOG_WARN, "the tokens file is readable by other users; chmod 600 it", "file",
                path, SVC_END);
    if (rc) {
        svc_auth_free(auth);
        return rc;
    }
    *out = auth;
    return 0;
}

void svc_auth_free(svc_auth *auth)
{
    if (!auth)
        return;
    free(auth->tokens);
    free(auth);
}

/* 0 when equal; reads all of stored whatever the content of given. */
static unsigned differs(const token *t, const char *given, size_t given_len)
{
    unsigned diff = (unsigned)(t->len ^ given_len);
    for (size_t i = 0; i < t->len; i++) {
        unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
        diff |= (unsigned)(g ^ (unsigned char)t->secret[i]);
    }
    return diff;
}

int svc_auth_check(const svc_auth *auth, const char *given, unsigned *roles, const char **principal)
{
    size_t given_len = strnlen(given, TOKEN_MAX + 1);
    const token *match = NULL;
    for (size_t i = 0; i < auth->count; i++)
        if (differs(&auth->tokens[i], given, given_len) == 0)
            match = &auth->tokens[i];
    if (!match)
        return 0;
    *roles = match->roles;
    *principal = match->principal;
    return 1;
}
