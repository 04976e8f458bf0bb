/* Replays inputs through a fuzz target without libFuzzer: each argument is a
 * file, or a folder whose files are replayed (in name order). ctest runs the
 * seed corpus and the kept regression inputs of every target this way, in
 * the release and sanitizer builds. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n)) {
        fclose(f);
        free(buf);
        return 1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 0;
}

static int cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    int bad = 0, count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) continue; /* an absent folder: nothing kept yet */
        if (!S_ISDIR(sb.st_mode)) {
            bad |= replay_file(argv[i]), count++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        char *names[4096];
        int n = 0;
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL && n < 4096)
            if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
        if (d) closedir(d);
        qsort(names, (size_t)n, sizeof *names, cmp);
        for (int k = 0; k < n; k++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", argv[i], names[k]);
            bad |= replay_file(p), count++;
            free(names[k]);
        }
    }
    printf("replayed %d inputs\n", count);
    return bad;
}
