// Next-token logits from upstream llama.cpp, as JSON, for comparing runtimes.
//
//   llamacpp-logits MODEL.gguf 3,17,1,42 > logits.json
//   -> {"model": "MODEL.gguf", "ids": [3, 17, 1, 42], "vocab": 64, "logits": [...]}
//
// The logits are those after the last id (one decode of all ids in one batch, on the CPU, with
// one thread so that the sums are reduced in one order). Built against the libllama of
// scripts/llamacpp.sh, which compiles this file; scripts/test-llamacpp.sh runs it. A C program
// rather than the Python bindings: it needs nothing but the library it tests, so it cannot pick
// up another llama.cpp that happens to be installed.

#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void quiet(enum ggml_log_level level, const char * text, void * user) {
    (void) user;
    if (level == GGML_LOG_LEVEL_ERROR) {
        fputs(text, stderr);
    }
}

int main(int argc, char ** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.gguf ID,ID,...\n", argv[0]);
        return 2;
    }
    const char * path = argv[1];
    int n_ids = 0;
    llama_token * ids = malloc(sizeof(llama_token) * (strlen(argv[2]) / 2 + 1));
    if (ids == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (char * p = argv[2]; *p != '\0';) {
        char * end = NULL;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 0x7fffffff || (*end != ',' && *end != '\0')) {
            fprintf(stderr, "not a list of token ids: %s\n", argv[2]);
            return 2;
        }
        ids[n_ids++] = (llama_token) v;
        p = *end == ',' ? end + 1 : end;
    }
    if (n_ids == 0) {
        fprintf(stderr, "no token ids given\n");
        return 2;
    }

    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model * model = llama_model_load_from_file(path, mp);
    if (model == NULL) {
        fprintf(stderr, "%s: llama.cpp could not load the model\n", path);
        return 1;
    }
    const struct llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);
    for (int i = 0; i < n_ids; i++) {
        if (ids[i] >= n_vocab) {
            fprintf(stderr, "token id %d is outside the vocabulary (size %d)\n", ids[i], n_vocab);
            return 2;
        }
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t) (n_ids < 64 ? 64 : n_ids);
    cp.n_batch = cp.n_ctx;
    cp.n_ubatch = cp.n_ctx;
    cp.n_threads = 1;
    cp.n_threads_batch = 1;
    cp.no_perf = true;
    struct llama_context * ctx = llama_init_from_model(model, cp);
    if (ctx == NULL) {
        fprintf(stderr, "%s: llama.cpp could not create a context\n", path);
        return 1;
    }
    int rc = llama_decode(ctx, llama_batch_get_one(ids, n_ids));
    if (rc != 0) {
        fprintf(stderr, "%s: llama_decode failed (%d)\n", path, rc);
        return 1;
    }
    const float * logits = llama_get_logits_ith(ctx, -1);
    if (logits == NULL) {
        fprintf(stderr, "%s: no logits for the last position\n", path);
        return 1;
    }
    printf("{\"model\": \"");
    for (const char * c = path; *c != '\0'; c++) {
        if (*c == '"' || *c == '\\') {
            putchar('\\');
        }
        putchar(*c);
    }
    printf("\", \"ids\": [");
    for (int i = 0; i < n_ids; i++) {
        printf(i ? ", %d" : "%d", ids[i]);
    }
    printf("], \"vocab\": %d, \"logits\": [", n_vocab);
    for (int i = 0; i < n_vocab; i++) {
        printf(i ? ", %.9g" : "%.9g", logits[i]);
    }
    printf("]}\n");
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    free(ids);
    return 0;
}
