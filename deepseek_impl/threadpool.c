/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * threadpool.c — a persistent pool of worker threads for the forward pass.
 * Threads are created once per context; each dsi_pool_run hands out task
 * indices through an atomic counter, the calling thread works too, and the
 * call returns when every task is done. Workers wait on a condition variable
 * between runs after a short spin, so decode steps (hundreds of runs per
 * token) do not pay a sleep/wake each time.
 */
#include "base.h"

#include <pthread.h>
#include <sched.h>

#define DSI_POOL_MAX 256
#define DSI_SPIN_ROUNDS 20000

typedef struct dsi_worker_arg { struct dsi_pool *p; int id; } dsi_worker_arg;

struct dsi_pool {
    const dsi_alloc *al;
    dsi_worker_arg *args;         /* one per worker thread, alive as long as they are */
    int n;                        /* workers including the caller */
    pthread_t threads[DSI_POOL_MAX];
    pthread_mutex_t lock;
    pthread_cond_t wake, done_cv;
    /* the current job */
    dsi_task_fn fn;
    void *ctx;
    int n_tasks;
    int next;                     /* atomic: next task index */
    int pending;                  /* atomic: workers still busy with this job */
    unsigned generation;          /* bumped per job (atomic reads while spinning) */
    bool quit;
};

static void dsi_pool_work(dsi_pool *p, int worker) {
    for (;;) {
        int i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
        if (i >= p->n_tasks) break;
        p->fn(p->ctx, i, worker);
    }
}

static void *dsi_worker_main(void *arg) {
    dsi_pool *p = ((dsi_worker_arg *)arg)->p;
    int id = ((dsi_worker_arg *)arg)->id;
    unsigned seen = 0;
    for (;;) {
        /* spin a little for the next job, then sleep */
        unsigned g = __atomic_load_n(&p->generation, __ATOMIC_ACQUIRE);
        for (int k = 0; g == seen && k < DSI_SPIN_ROUNDS; k++) {
            if (__atomic_load_n(&p->quit, __ATOMIC_ACQUIRE)) return NULL;
            if ((k & 255) == 255) sched_yield();
            g = __atomic_load_n(&p->generation, __ATOMIC_ACQUIRE);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->lock);
            while (!p->quit && p->generation == seen) pthread_cond_wait(&p->wake, &p->lock);
            g = p->generation;
            bool quit = p->quit;
            pthread_mutex_unlock(&p->lock);
            if (quit) return NULL;
        }
        seen = g;
        dsi_pool_work(p, id);
        if (__atomic_sub_fetch(&p->pending, 1, __ATOMIC_ACQ_REL) == 0) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->lock);
        }
    }
}

DSI_FUNC ds_status dsi_pool_new(dsi_pool **out, int n_threads, const dsi_alloc *al, dsi_err *e) {
    *out = NULL;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > DSI_POOL_MAX) n_threads = DSI_POOL_MAX;
    dsi_pool *p = dsi_calloc(al, 1, sizeof *p);
    dsi_worker_arg *args = p ? dsi_calloc(al, (size_t)n_threads, sizeof *args) : NULL;
    if (!p || !args) {
        dsi_free(al, p);
        return dsi_fail(e, DS_ERR_NOMEM, "out of memory for the thread pool");
    }
    p->al = al;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    p->n = 1;
    p->args = args;
    for (int i = 1; i < n_threads; i++) {
        args[i].p = p;
        args[i].id = i;
        if (pthread_create(&p->threads[i], NULL, dsi_worker_main, &args[i]) != 0) break;
        p->n++;
    }
    *out = p;
    return DS_OK;
}

DSI_FUNC int dsi_pool_size(const dsi_pool *p) { return p ? p->n : 1; }

DSI_FUNC void dsi_pool_run(dsi_pool *p, dsi_task_fn fn, void *ctx, int n) {
    if (n <= 0) return;
    if (!p || p->n == 1 || n == 1) {
        for (int i = 0; i < n; i++) fn(ctx, i, 0);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n;
    __atomic_store_n(&p->next, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&p->pending, p->n - 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&p->lock);
    __atomic_add_fetch(&p->generation, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    dsi_pool_work(p, 0);
    /* wait for the workers: spin first, they are usually just finishing */
    for (int k = 0; k < DSI_SPIN_ROUNDS && __atomic_load_n(&p->pending, __ATOMIC_ACQUIRE); k++)
        if ((k & 255) == 255) sched_yield();
    if (__atomic_load_n(&p->pending, __ATOMIC_ACQUIRE)) {
        pthread_mutex_lock(&p->lock);
        while (__atomic_load_n(&p->pending, __ATOMIC_ACQUIRE)) pthread_cond_wait(&p->done_cv, &p->lock);
        pthread_mutex_unlock(&p->lock);
    }
}

DSI_FUNC void dsi_pool_free(dsi_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    __atomic_store_n(&p->quit, true, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done_cv);
    dsi_free(p->al, p->args);
    dsi_free(p->al, p);
}
