/* The worker's round loop in C (autotts/sandbox/remote.py is the specification; tests play
 * both and compare every frame).
 *
 * step_group(slots, observations, slow, outcome, modified, classes, max_ids) -> list
 *     One round of a group on the worker: for each slot ([generator, state, entry]) and its
 *     observation, write the observation into the mirror state, resume the generator with
 *     the reply and put the entry of what it yields into the slot; returns the slots whose
 *     episodes go on. Handled here: the fast observation form (a 6-tuple) of entries
 *     c C b r p x a n, on a mirror whose lists are still lists and that has no signals, and
 *     the actions Continue, Branch, Read, Probe and Prune with exact
 *     built-in arguments. Everything else goes to the specification:
 *       slow(slot, observation)          the whole step of one slot, in Python;
 *       outcome(gen, status, value)      the entry of a generator that returned (status 1,
 *                                        value the return value), raised (2, the exception:
 *                                        only Exception subclasses; others propagate) or
 *                                        yielded an action not encoded here (0);
 *       modified(gen)                    the entry of a mirror the controller changed (after
 *                                        IndexError, TypeError, ValueError, KeyError or
 *                                        AttributeError while writing it).
 *     classes = (Continue, Branch, Read, Probe, Prune).
 *
 * The worker is the untrusted side: nothing here is a security boundary (the parent reads
 * every entry strictly). What matters is that an honest controller sees exactly what the
 * Python specification would give it, and that a controller which changed its mirror gets
 * the same failure.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include "_frames.h"
#include <string.h>


static PyObject *s_depth, *s_answer, *s_history, *s_finished, *s_pruned, *s_finals, *s_model,
    *s_models, *s_signals, *s_tokens, *s_probe_tokens, *s_cost, *s_ids, *s_steps, *s_probe,
    *s_k, *s_close, *s_utf8, *s_surrogatepass;

typedef struct {
    PyObject *depth, *answer, *history, *finished, *pruned, *finals, *model, *models;
} mirror;

static void
mirror_clear(mirror *m)
{
    Py_CLEAR(m->depth);
    Py_CLEAR(m->answer);
    Py_CLEAR(m->history);
    Py_CLEAR(m->finished);
    Py_CLEAR(m->pruned);
    Py_CLEAR(m->finals);
    Py_CLEAR(m->model);
    Py_CLEAR(m->models);
}

/* 1: the mirror's lists are exact lists, models a tuple and signals an empty dict (the fast
 * path applies); 0: anything else (the specification decides); -1: an error. */
static int
mirror_get(PyObject *state, mirror *m)
{
    memset(m, 0, sizeof(*m));
    PyObject **fields[] = {&m->depth, &m->answer, &m->history, &m->finished, &m->pruned,
                           &m->finals, &m->model};
    PyObject *names[] = {s_depth, s_answer, s_history, s_finished, s_pruned, s_finals, s_model};
    for (int f = 0; f < 7; f++) {
        *fields[f] = PyObject_GetAttr(state, names[f]);
        if (*fields[f] == NULL) {
            PyErr_Clear();
            goto not_fast;
        }
        if (!PyList_CheckExact(*fields[f]))
            goto not_fast;
    }
    m->models = PyObject_GetAttr(state, s_models);
    if (m->models == NULL) {
        PyErr_Clear();
        goto not_fast;
    }
    PyObject *signals = PyObject_GetAttr(state, s_signals);
    if (signals == NULL) {
        PyErr_Clear();
        goto not_fast;
    }
    int empty = PyDict_CheckExact(signals) && PyDict_GET_SIZE(signals) == 0;
    Py_DECREF(signals);
    if (!PyTuple_CheckExact(m->models) || !empty)
        goto not_fast;
    return 1;
not_fast:
    mirror_clear(m);
    return 0;
}

static int
index_of(PyObject *list, PyObject *id, Py_ssize_t *i)
{
    *i = PyLong_AsSsize_t(id);
    if (*i == -1 && PyErr_Occurred())
        return -1;
    if (*i < 0 || *i >= PyList_GET_SIZE(list)) {
        PyErr_Format(PyExc_IndexError, "branch index %zd out of range", *i);
        return -1;
    }
    return 0;
}

static int
set_at(PyObject *list, Py_ssize_t i, PyObject *item)
{
    if (i < 0 || i >= PyList_GET_SIZE(list)) {
        PyErr_Format(PyExc_IndexError, "branch index %zd out of range", i);
        return -1;
    }
    Py_INCREF(item);
    return PyList_SetItem(list, i, item);
}

static int
append_to_history(mirror *m, Py_ssize_t i, PyObject *a)
{
    if (i >= PyList_GET_SIZE(m->history)) {
        PyErr_Format(PyExc_IndexError, "branch index %zd out of range", i);
        return -1;
    }
    PyObject *seen = Py_NewRef(PyList_GET_ITEM(m->history, i));
    int failed;
    if (PyList_CheckExact(seen))
        failed = PyList_Append(seen, a);
    else { /* whatever the controller put there: its own append, as in the specification */
        PyObject *done = PyObject_CallMethod(seen, "append", "O", a);
        failed = done == NULL ? -1 : 0;
        Py_XDECREF(done);
    }
    Py_DECREF(seen);
    return failed;
}

/* the truth of list[i], with the bounds checked (a new reference is held while Python code
 * may run) */
static int
truth_at(PyObject *list, Py_ssize_t i)
{
    if (i < 0 || i >= PyList_GET_SIZE(list)) {
        PyErr_Format(PyExc_IndexError, "branch index %zd out of range", i);
        return -1;
    }
    PyObject *item = Py_NewRef(PyList_GET_ITEM(list, i));
    int truth = PyObject_IsTrue(item);
    Py_DECREF(item);
    return truth;
}

/* depth[i] += steps; with answers: answer[i] = a, history[i].append(a) */
static int
reveal(mirror *m, PyObject *ids, PyObject *steps, PyObject *answers)
{
    Py_ssize_t n = PyTuple_GET_SIZE(ids);
    int one = PyLong_CheckExact(steps);
    if (!one && (!PyTuple_Check(steps) || PyTuple_GET_SIZE(steps) != n)) {
        PyErr_SetString(PyExc_TypeError, "steps must be an int or one per id");
        return -1;
    }
    if (answers != Py_None && (!PyTuple_Check(answers) || PyTuple_GET_SIZE(answers) != n)) {
        PyErr_SetString(PyExc_ValueError, "one answer per id");
        return -1;
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        Py_ssize_t i;
        if (index_of(m->depth, PyTuple_GET_ITEM(ids, j), &i) < 0)
            return -1;
        PyObject *was = Py_NewRef(PyList_GET_ITEM(m->depth, i));
        PyObject *d = PyNumber_Add(was, one ? steps : PyTuple_GET_ITEM(steps, j));
        Py_DECREF(was);
        if (d == NULL)
            return -1;
        int failed = set_at(m->depth, i, d);
        Py_DECREF(d);
        if (failed)
            return -1;
        if (answers == Py_None)
            continue;
        PyObject *a = PyTuple_GET_ITEM(answers, j);
        if (set_at(m->answer, i, a) < 0 || append_to_history(m, i, a) < 0)
            return -1;
    }
    return 0;
}

static int
extend_with(PyObject *list, PyObject *item, Py_ssize_t k)
{
    for (Py_ssize_t j = 0; j < k; j++)
        if (PyList_Append(list, item) < 0)
            return -1;
    return 0;
}

/* the model an entry names at byte `at` (a new reference), or NULL with no error for none */
static PyObject *
entry_model(PyObject *entry, Py_ssize_t at, int *failed)
{
    *failed = 0;
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(entry);
    Py_ssize_t size = PyBytes_GET_SIZE(entry);
    if (size < at + 4) {
        *failed = 1;
        PyErr_SetString(PyExc_ValueError, "a short entry");
        return NULL;
    }
    uint32_t n = get_u32(p + at);
    if (n == NO_MODEL)
        return NULL;
    if ((Py_ssize_t)n > size - at - 4) {
        *failed = 1;
        PyErr_SetString(PyExc_ValueError, "a short entry");
        return NULL;
    }
    PyObject *model = PyUnicode_DecodeUTF8((const char *)p + at + 4, n, NULL);
    if (model == NULL)
        *failed = 1;
    return model;
}

/* k new branches of the entry's model (or the first of the episode's models) */
static int
open_branches(mirror *m, Py_ssize_t k, PyObject *entry, Py_ssize_t at)
{
    int failed;
    PyObject *model = entry_model(entry, at, &failed);
    if (failed)
        return -1;
    if (model == NULL) {
        if (PyTuple_GET_SIZE(m->models) == 0) {
            PyErr_SetString(PyExc_IndexError, "no models");
            return -1;
        }
        model = Py_NewRef(PyTuple_GET_ITEM(m->models, 0));
    }
    PyObject *zero = PyLong_FromLong(0);
    int ok = zero != NULL && extend_with(m->model, model, k) == 0 &&
             extend_with(m->depth, zero, k) == 0 && extend_with(m->answer, Py_None, k) == 0;
    Py_XDECREF(zero);
    Py_DECREF(model);
    for (Py_ssize_t j = 0; ok && j < k; j++) {
        PyObject *seen = PyList_New(0);
        ok = seen != NULL && PyList_Append(m->history, seen) == 0;
        Py_XDECREF(seen);
    }
    ok = ok && extend_with(m->finished, Py_False, k) == 0 &&
         extend_with(m->pruned, Py_False, k) == 0;
    return ok ? 0 : -1;
}

/* Write a fast observation into the mirror; the reply (borrowed from the observation). */
static PyObject *
apply_fast(PyObject *state, mirror *m, PyObject *entry, PyObject *observation)
{
    PyObject *bytes = PyTuple_GET_ITEM(entry, 0), *ids = PyTuple_GET_ITEM(entry, 1),
             *steps = PyTuple_GET_ITEM(entry, 2);
    PyObject *reply = PyTuple_GET_ITEM(observation, 0), *cost = PyTuple_GET_ITEM(observation, 3),
             *answers = PyTuple_GET_ITEM(observation, 4), *ends = PyTuple_GET_ITEM(observation, 5);
    if (PyObject_SetAttr(state, s_tokens, PyTuple_GET_ITEM(observation, 1)) < 0 ||
        PyObject_SetAttr(state, s_probe_tokens, PyTuple_GET_ITEM(observation, 2)) < 0)
        return NULL;
    if (cost != Py_None && PyObject_SetAttr(state, s_cost, cost) < 0)
        return NULL;
    PyObject *opened = NULL; /* the new ids of Branch/Read */
    char tag = PyBytes_AS_STRING(bytes)[0];
    if (tag == 'b' || tag == 'r') {
        if (!PyList_Check(reply)) {
            PyErr_SetString(PyExc_TypeError, "the reply of Branch/Read is a list");
            return NULL;
        }
        opened = PyList_AsTuple(reply);
        if (opened == NULL || open_branches(m, PyTuple_GET_SIZE(opened), bytes,
                                            tag == 'b' ? 10 : 9) < 0)
            goto fail;
        if (tag == 'b') {
            PyObject *one = PyLong_FromLong(1);
            int failed = one == NULL || reveal(m, opened, one, answers) < 0;
            Py_XDECREF(one);
            if (failed)
                goto fail;
        }
        ids = opened;
    }
    else if (tag == 'c' || tag == 'C') {
        if (reveal(m, ids, steps, answers) < 0)
            return NULL;
    }
    else if (tag == 'p') {
        if (!PyTuple_Check(answers) || PyTuple_GET_SIZE(answers) != PyTuple_GET_SIZE(ids)) {
            PyErr_SetString(PyExc_ValueError, "one answer per probed id");
            return NULL;
        }
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(ids); j++) {
            Py_ssize_t i = PyLong_AsSsize_t(PyTuple_GET_ITEM(ids, j));
            if (i == -1 && PyErr_Occurred())
                return NULL;
            int done = truth_at(m->finished, i);
            if (done < 0)
                return NULL;
            int started = done ? 0 : truth_at(m->depth, i);
            if (started < 0)
                return NULL;
            if (!started)
                continue;
            PyObject *a = PyTuple_GET_ITEM(answers, j);
            if (set_at(m->answer, i, a) < 0 || append_to_history(m, i, a) < 0)
                return NULL;
        }
    }
    else if (tag == 'x') {
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(ids); j++) {
            Py_ssize_t i;
            if (index_of(m->pruned, PyTuple_GET_ITEM(ids, j), &i) < 0 || set_at(m->pruned, i, Py_True) < 0)
                return NULL;
        }
    }
    if (PyTuple_Check(ends)) {
        for (Py_ssize_t e = 0; e < PyTuple_GET_SIZE(ends); e++) {
            PyObject *end = PyTuple_GET_ITEM(ends, e);
            if (!PyTuple_Check(end) || PyTuple_GET_SIZE(end) != 3) {
                PyErr_SetString(PyExc_ValueError, "an end is (position, depth, final)");
                goto fail;
            }
            Py_ssize_t position = PyLong_AsSsize_t(PyTuple_GET_ITEM(end, 0)), i;
            if (position == -1 && PyErr_Occurred())
                goto fail;
            if (position < 0 || position >= PyTuple_GET_SIZE(ids)) {
                PyErr_SetString(PyExc_IndexError, "an end's position");
                goto fail;
            }
            PyObject *final = PyTuple_GET_ITEM(end, 2);
            if (index_of(m->depth, PyTuple_GET_ITEM(ids, position), &i) < 0 ||
                set_at(m->depth, i, PyTuple_GET_ITEM(end, 1)) < 0 ||
                set_at(m->finished, i, Py_True) < 0)
                goto fail;
            if (answers == Py_None &&
                (set_at(m->answer, i, final) < 0 || append_to_history(m, i, final) < 0))
                goto fail;
            if (PyList_Append(m->finals, final) < 0)
                goto fail;
        }
    }
    else if (ends != Py_None) {
        PyErr_SetString(PyExc_TypeError, "ends is a tuple");
        goto fail;
    }
    Py_XDECREF(opened);
    return reply;
fail:
    Py_XDECREF(opened);
    return NULL;
}

/* 1 and *v for an exact int in 64 bits, 0 for anything else (no error set) */
static int
exact_i64(PyObject *value, long long *v)
{
    if (!PyLong_CheckExact(value))
        return 0;
    int overflow = 0;
    *v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow || (*v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* An attribute of an action (a new reference), or NULL with no error set */
static PyObject *
field(PyObject *action, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(action, name);
    if (value == NULL)
        PyErr_Clear();
    return value;
}

/* The entry tuple of an action encoded exactly as protocol.encode_action would, or NULL
 * with no error set where the specification decides (any other action or argument). */
static PyObject *
encode_fast(PyObject *action, PyObject *const *classes, Py_ssize_t max_ids)
{
    PyTypeObject *kind = Py_TYPE(action);
    PyObject *ids = NULL, *a = NULL, *b = NULL, *entry = NULL, *model_bytes = NULL;
    int is_continue = kind == (PyTypeObject *)classes[0];
    int is_branch = kind == (PyTypeObject *)classes[1], is_read = kind == (PyTypeObject *)classes[2];
    char tag = 0;
    long long steps = 0, k = 0;
    if (is_continue || kind == (PyTypeObject *)classes[3] || kind == (PyTypeObject *)classes[4]) {
        PyObject *given = field(action, s_ids);
        if (given == NULL)
            return NULL;
        if (PyTuple_CheckExact(given))
            ids = given;
        else {
            ids = PyList_CheckExact(given) ? PyList_AsTuple(given) : NULL;
            Py_DECREF(given);
            if (ids == NULL) {
                PyErr_Clear();
                return NULL;
            }
        }
        Py_ssize_t n = PyTuple_GET_SIZE(ids);
        if (n > max_ids)
            goto defer;
        if (is_continue) {
            a = field(action, s_steps);
            b = field(action, s_probe);
            if (a == NULL || b == NULL || (b != Py_True && b != Py_False))
                goto defer;
            if (exact_i64(a, &steps)) {
                if (steps < 1 || steps > MAX_STEPS)
                    goto defer;
                tag = 'c';
            }
            else if (PyList_CheckExact(a) || PyTuple_CheckExact(a)) {
                PyObject *each = PySequence_Tuple(a); /* tuple(steps), as the specification */
                if (each == NULL)
                    goto error;
                Py_SETREF(a, each);
                if (PyTuple_GET_SIZE(a) != n)
                    goto defer;
                tag = 'C';
            }
            else
                goto defer;
        }
        else
            tag = kind == (PyTypeObject *)classes[3] ? 'p' : 'x';
        Py_ssize_t head = tag == 'c' ? 10 : tag == 'C' ? 2 : 1;
        PyObject *out = PyBytes_FromStringAndSize(NULL, head + 4 + 8 * n * (tag == 'C' ? 2 : 1));
        if (out == NULL)
            goto error;
        char *p = PyBytes_AS_STRING(out);
        p[0] = tag;
        if (tag != 'p' && tag != 'x')
            p[1] = b == Py_True ? 1 : 0;
        if (tag == 'c')
            put_i64(p + 2, steps);
        put_u32(p + head, (uint32_t)n);
        for (Py_ssize_t j = 0; j < n; j++) {
            long long v;
            if (!exact_i64(PyTuple_GET_ITEM(ids, j), &v)) {
                Py_DECREF(out);
                goto defer;
            }
            put_i64(p + head + 4 + 8 * j, v);
            if (tag != 'C')
                continue;
            if (!exact_i64(PyTuple_GET_ITEM(a, j), &v) || v < 1 || v > MAX_STEPS) {
                Py_DECREF(out);
                goto defer;
            }
            put_i64(p + head + 4 + 8 * n + 8 * j, v);
        }
        PyObject *third = tag == 'c' || tag == 'C' ? Py_NewRef(a) : PyLong_FromLong(0);
        entry = third != NULL ? PyTuple_Pack(3, out, ids, third) : NULL;
        Py_XDECREF(third);
        Py_DECREF(out);
        goto done;
    }
    if (!is_branch && !is_read)
        return NULL;
    a = field(action, s_k);
    if (a == NULL || !exact_i64(a, &k))
        goto defer;
    if (is_branch) {
        b = field(action, s_probe);
        if (b == NULL || (b != Py_True && b != Py_False))
            goto defer;
    }
    PyObject *model = field(action, s_model);
    if (model == NULL)
        goto defer;
    if (model != Py_None) {
        if (!PyUnicode_CheckExact(model)) {
            Py_DECREF(model);
            goto defer;
        }
        model_bytes = PyUnicode_AsEncodedString(model, "utf-8", "surrogatepass");
        Py_DECREF(model);
        if (model_bytes == NULL)
            goto error;
    }
    else
        Py_DECREF(model);
    Py_ssize_t head = is_branch ? 10 : 9, text = model_bytes ? PyBytes_GET_SIZE(model_bytes) : 0;
    PyObject *out = PyBytes_FromStringAndSize(NULL, head + 4 + text);
    if (out == NULL)
        goto error;
    char *p = PyBytes_AS_STRING(out);
    p[0] = is_branch ? 'b' : 'r';
    if (is_branch)
        p[1] = b == Py_True ? 1 : 0;
    put_i64(p + head - 8, k);
    put_u32(p + head, model_bytes ? (uint32_t)text : NO_MODEL);
    if (model_bytes)
        memcpy(p + head + 4, PyBytes_AS_STRING(model_bytes), text);
    PyObject *empty = PyTuple_New(0), *step = PyLong_FromLong(is_branch ? 1 : 0);
    entry = empty && step ? PyTuple_Pack(3, out, empty, step) : NULL;
    Py_XDECREF(empty);
    Py_XDECREF(step);
    Py_DECREF(out);
    goto done;
defer:
    PyErr_Clear();
    entry = NULL;
    goto done;
error:
    PyErr_Clear(); /* the specification raises what is wrong */
    entry = NULL;
done:
    Py_XDECREF(ids);
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(model_bytes);
    return entry;
}

static int
is_modified_error(void)
{
    return PyErr_ExceptionMatches(PyExc_IndexError) || PyErr_ExceptionMatches(PyExc_ValueError) ||
           PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_KeyError) ||
           PyErr_ExceptionMatches(PyExc_AttributeError);
}

static void
close_generator(PyObject *gen)
{
    PyObject *result = PyObject_CallMethodNoArgs(gen, s_close);
    Py_XDECREF(result);
    PyErr_Clear(); /* as contextlib.suppress(BaseException) */
}

/* The new entry of a slot after its generator got `reply`; NULL on an error to propagate. */
static PyObject *
resume(PyObject *gen, PyObject *reply, PyObject *outcome, PyObject *const *classes,
       Py_ssize_t max_ids)
{
    PyObject *value = NULL;
    PySendResult sent = PyIter_Send(gen, reply, &value);
    if (sent == PYGEN_NEXT) {
        PyObject *entry = encode_fast(value, classes, max_ids);
        if (entry == NULL && !PyErr_Occurred())
            entry = PyObject_CallFunction(outcome, "OiO", gen, 0, value);
        Py_DECREF(value);
        return entry;
    }
    if (sent == PYGEN_RETURN) {
        PyObject *entry = PyObject_CallFunction(outcome, "OiO", gen, 1, value);
        Py_DECREF(value);
        return entry;
    }
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return NULL;
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (tb != NULL)
        PyException_SetTraceback(exc, tb);
    PyObject *entry = PyObject_CallFunction(outcome, "OiO", gen, 2, exc);
    Py_XDECREF(type);
    Py_XDECREF(exc);
    Py_XDECREF(tb);
    return entry;
}

static int
fast_tag(char tag)
{
    return tag != 0 && strchr("cCbrpxan", tag) != NULL;
}

/* One slot's part of a round: 1 if its episode goes on, 0 if it ended, -1 on an error to
 * propagate. The slot's items are held while Python code runs. */
static int
step_slot(PyObject *slot, PyObject *observation, PyObject *slow, PyObject *outcome,
          PyObject *modified, PyObject *const *classes, Py_ssize_t max_ids)
{
    if (!PyList_CheckExact(slot) || PyList_GET_SIZE(slot) != 3) {
        PyErr_SetString(PyExc_TypeError, "a slot is [generator, state, entry]");
        return -1;
    }
    if (PyLong_CheckExact(observation))
        return 0; /* 0: it ended by its own entry */
    PyObject *gen = Py_NewRef(PyList_GET_ITEM(slot, 0)),
             *state = Py_NewRef(PyList_GET_ITEM(slot, 1)),
             *entry = Py_NewRef(PyList_GET_ITEM(slot, 2));
    int kept = -1;
    if (PyUnicode_CheckExact(observation)) { /* "!": the engine ended it */
        close_generator(gen);
        kept = 0;
        goto done;
    }
    mirror m;
    int fast = PyTuple_CheckExact(observation) && PyTuple_GET_SIZE(observation) == 6 &&
               PyGen_CheckExact(gen) && PyTuple_CheckExact(entry) &&
               PyTuple_GET_SIZE(entry) == 3 && PyBytes_CheckExact(PyTuple_GET_ITEM(entry, 0)) &&
               PyBytes_GET_SIZE(PyTuple_GET_ITEM(entry, 0)) > 0 &&
               PyTuple_CheckExact(PyTuple_GET_ITEM(entry, 1)) &&
               fast_tag(PyBytes_AS_STRING(PyTuple_GET_ITEM(entry, 0))[0]);
    if (fast && (fast = mirror_get(state, &m)) < 0)
        goto done;
    if (!fast) {
        PyObject *stepped = PyObject_CallFunctionObjArgs(slow, slot, observation, NULL);
        if (stepped == NULL)
            goto done;
        Py_DECREF(stepped);
        kept = 1;
        goto done;
    }
    PyObject *reply = apply_fast(state, &m, entry, observation), *next;
    mirror_clear(&m);
    if (reply == NULL) {
        if (!is_modified_error())
            goto done;
        PyErr_Clear();
        close_generator(gen);
        next = Py_NewRef(modified);
    }
    else {
        Py_INCREF(reply);
        next = resume(gen, reply, outcome, classes, max_ids);
        Py_DECREF(reply);
        if (next == NULL)
            goto done;
    }
    kept = PyList_SetItem(slot, 2, next) < 0 ? -1 : 1;
done:
    Py_DECREF(gen);
    Py_DECREF(state);
    Py_DECREF(entry);
    return kept;
}

static PyObject *
step_group(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7 || !PyList_Check(args[0]) || !PyList_Check(args[1]) ||
        PyList_GET_SIZE(args[0]) != PyList_GET_SIZE(args[1]) || !PyTuple_Check(args[5]) ||
        PyTuple_GET_SIZE(args[5]) != 5) {
        PyErr_SetString(PyExc_ValueError,
                        "step_group(slots, observations, slow, outcome, modified, classes, "
                        "max_ids): one observation per slot");
        return NULL;
    }
    PyObject *slots = args[0], *observations = args[1];
    Py_ssize_t max_ids = PyLong_AsSsize_t(args[6]);
    if (max_ids == -1 && PyErr_Occurred())
        return NULL;
    PyObject *kept = PyList_New(0);
    if (kept == NULL)
        return NULL;
    for (Py_ssize_t s = 0; s < PyList_GET_SIZE(slots) && s < PyList_GET_SIZE(observations); s++) {
        PyObject *slot = Py_NewRef(PyList_GET_ITEM(slots, s)),
                 *observation = Py_NewRef(PyList_GET_ITEM(observations, s));
        int on = step_slot(slot, observation, args[2], args[3], args[4],
                           &PyTuple_GET_ITEM(args[5], 0), max_ids);
        if (on == 1 && PyList_Append(kept, slot) < 0)
            on = -1;
        Py_DECREF(slot);
        Py_DECREF(observation);
        if (on < 0) {
            Py_DECREF(kept);
            return NULL;
        }
    }
    return kept;
}

static PyMethodDef methods[] = {
    {"step_group", (PyCFunction)(void (*)(void))step_group, METH_FASTCALL,
     "One round of a group of episodes on the worker (see the module docstring)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mirror", "The sandbox worker's round loop in C.", -1, methods,
};

PyMODINIT_FUNC
PyInit__mirror(void)
{
    struct {
        PyObject **name;
        const char *text;
    } names[] = {
        {&s_depth, "depth"},   {&s_answer, "answer"},   {&s_history, "history"},
        {&s_finished, "finished"}, {&s_pruned, "pruned"}, {&s_finals, "finals"},
        {&s_model, "model"},   {&s_models, "models"},   {&s_signals, "signals"},
        {&s_tokens, "tokens"}, {&s_probe_tokens, "probe_tokens"}, {&s_cost, "cost"},
        {&s_ids, "ids"},       {&s_steps, "steps"},     {&s_probe, "probe"},
        {&s_k, "k"},           {&s_close, "close"},     {&s_utf8, "utf-8"},
        {&s_surrogatepass, "surrogatepass"},
    };
    for (size_t j = 0; j < sizeof(names) / sizeof(names[0]); j++) {
        *names[j].name = PyUnicode_InternFromString(names[j].text);
        if (*names[j].name == NULL)
            return NULL;
    }
    return PyModule_Create(&module);
}
