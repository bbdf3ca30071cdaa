/* The sandbox protocol's hot paths in C (autotts/sandbox/protocol.py is the specification;
 * tests run both and compare).
 *
 * encode_ids(ids) -> bytes
 *     A round entry's id list: a 4-byte little-endian count, then each id as a signed
 *     64-bit little-endian integer. TypeError unless every id is a built-in int (bools and
 *     int subclasses refused), OverflowError for one outside 64 bits.
 *
 * pick(values, ids) -> tuple
 *     values[i] for each id (a list and a tuple of ints): the answers an action revealed.
 *
 * decode_round(data, n, Continue, Branch, Read, Probe, Prune, ChargeAgain, Note, Generate,
 *              answer_limit, text_limit, prompt_limit, max_ids) -> list or None
 *     The n entries of a round frame as action objects, or ("=", answer, reason),
 *     ("!", message) and ("?", message). None for anything malformed: the caller then runs
 *     the specification, which says what is wrong.
 *
 * ReplayCore and act_round: the parent's compiled engine of plain replay episodes, and one
 *     round of their common actions in one call (described where they are defined).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include "_frames.h"
#include <string.h>

#include <stdarg.h>

static PyObject *
encode_ids(PyObject *self, PyObject *ids)
{
    PyObject *seq = PySequence_Fast(ids, "branch ids must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > 0x7FFFFFF) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_OverflowError, "too many branch ids");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, 4 + 8 * n);
    if (out == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    char *p = PyBytes_AS_STRING(out);
    put_u32(p, (uint32_t)n);
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, j);
        if (!PyLong_CheckExact(item)) {
            PyErr_SetString(PyExc_TypeError, "branch ids must be ints");
            goto fail;
        }
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(item, &overflow);
        if (overflow) {
            PyErr_SetString(PyExc_OverflowError, "a branch id is out of range");
            goto fail;
        }
        if (v == -1 && PyErr_Occurred())
            goto fail;
        put_i64(p + 4 + 8 * j, (int64_t)v);
    }
    Py_DECREF(seq);
    return out;
fail:
    Py_DECREF(seq);
    Py_DECREF(out);
    return NULL;
}

typedef struct {
    const unsigned char *p, *end;
    Py_ssize_t max_ids; /* branch ids one action may name */
} reader;

static int
take(reader *r, Py_ssize_t n, const unsigned char **out)
{
    if (n < 0 || r->end - r->p < n)
        return 0;
    *out = r->p;
    r->p += n;
    return 1;
}

static int
read_u32(reader *r, uint32_t *v)
{
    const unsigned char *p;
    if (!take(r, 4, &p))
        return 0;
    *v = get_u32(p);
    return 1;
}

static int
read_i64(reader *r, int64_t *v)
{
    const unsigned char *p;
    if (!take(r, 8, &p))
        return 0;
    *v = get_i64(p);
    return 1;
}

static int
read_flag(reader *r, PyObject **flag)
{
    const unsigned char *p;
    if (!take(r, 1, &p) || p[0] > 1)
        return 0;
    *flag = p[0] ? Py_True : Py_False;
    return 1;
}

/* a tuple of n int64s; NULL (no error set) if the frame ends first */
static PyObject *
read_longs(reader *r, uint32_t n)
{
    const unsigned char *p;
    if ((uint64_t)n * 8 > (uint64_t)(r->end - r->p) || !take(r, (Py_ssize_t)n * 8, &p))
        return NULL;
    PyObject *t = PyTuple_New(n);
    if (t == NULL)
        return NULL;
    for (uint32_t j = 0; j < n; j++) {
        PyObject *v = PyLong_FromLongLong(get_i64(p + 8 * (size_t)j));
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, j, v);
    }
    return t;
}

static PyObject *
read_ids(reader *r)
{
    uint32_t n;
    if (!read_u32(r, &n) || (Py_ssize_t)n > r->max_ids)
        return NULL;
    return read_longs(r, n);
}

/* UTF-8 text of at most limit characters; NULL (no error set) when malformed */
static PyObject *
read_text(reader *r, Py_ssize_t limit)
{
    uint32_t n;
    const unsigned char *p;
    if (!read_u32(r, &n) || (uint64_t)n > 4 * (uint64_t)limit || !take(r, (Py_ssize_t)n, &p))
        return NULL;
    PyObject *text = PyUnicode_DecodeUTF8((const char *)p, (Py_ssize_t)n, "surrogatepass");
    if (text == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (PyUnicode_GET_LENGTH(text) > limit) {
        Py_DECREF(text);
        return NULL;
    }
    return text;
}

/* a model name, or None; *ok = 0 when malformed */
static PyObject *
read_model(reader *r, int *ok)
{
    *ok = 1;
    if (r->end - r->p >= 4 && get_u32(r->p) == NO_MODEL) {
        r->p += 4;
        Py_RETURN_NONE;
    }
    PyObject *text = read_text(r, 200);
    *ok = text != NULL;
    return text;
}

/* cls(*items): an action class's __init__ only stores its arguments in the __slots__ of the
 * same names, so they are written straight into those slots (the constructor's Python frame
 * cost more than the rest of the decoding); a class without exactly those slots is called. */
static PyObject *
make(PyObject *cls, const char *const *names, PyObject **items, Py_ssize_t n)
{
    for (Py_ssize_t j = 0; j < n; j++)
        if (items[j] == NULL)
            return NULL;
    PyTypeObject *type = (PyTypeObject *)cls;
    PyMemberDef *members = type->tp_members;
    Py_ssize_t offsets[3], found = 0;
    for (Py_ssize_t m = 0; members != NULL && members[m].name != NULL; m++)
        for (Py_ssize_t j = 0; j < n; j++)
            if (strcmp(members[m].name, names[j]) == 0 && members[m].type == T_OBJECT_EX) {
                offsets[j] = members[m].offset;
                found++;
            }
    if (found != n || type->tp_dictoffset != 0 || members[n].name != NULL)
        return PyObject_Vectorcall(cls, items, n, NULL);
    PyObject *obj = type->tp_alloc(type, 0);
    if (obj == NULL)
        return NULL;
    for (Py_ssize_t j = 0; j < n; j++) {
        Py_INCREF(items[j]);
        *(PyObject **)((char *)obj + offsets[j]) = items[j];
    }
    return obj;
}

static const char *const CONTINUE[] = {"ids", "steps", "probe"},
                         *const BRANCH[] = {"k", "probe", "model"}, *const READ[] = {"k", "model"},
                         *const IDS[] = {"ids"}, *const CHARGE[] = {"branch"},
                         *const NOTE[] = {"text"},
                         *const GENERATE[] = {"prompt", "model", "max_tokens"};

static PyObject *
decode_entry(reader *r, PyObject *const *classes, Py_ssize_t limits[3])
{
    const unsigned char *t;
    if (!take(r, 1, &t))
        return NULL;
    PyObject *items[3] = {NULL, NULL, NULL}, *out = NULL, *flag = NULL;
    int64_t v;
    int ok = 1;
    switch (t[0]) {
    case 'c': {
        if (!read_flag(r, &flag) || !read_i64(r, &v))
            return NULL;
        items[1] = PyLong_FromLongLong(v);
        items[0] = items[1] ? read_ids(r) : NULL;
        items[2] = flag;
        Py_INCREF(flag);
        out = make(classes[0], CONTINUE, items, 3);
        break;
    }
    case 'C': {
        if (!read_flag(r, &flag))
            return NULL;
        items[0] = read_ids(r);
        items[1] = items[0] ? read_longs(r, (uint32_t)PyTuple_GET_SIZE(items[0])) : NULL;
        items[2] = flag;
        Py_INCREF(flag);
        out = make(classes[0], CONTINUE, items, 3);
        break;
    }
    case 'b':
        if (!read_flag(r, &flag) || !read_i64(r, &v))
            return NULL;
        items[0] = PyLong_FromLongLong(v);
        items[1] = flag;
        Py_INCREF(flag);
        items[2] = items[0] ? read_model(r, &ok) : NULL;
        out = make(classes[1], BRANCH, items, 3);
        break;
    case 'r':
        if (!read_i64(r, &v))
            return NULL;
        items[0] = PyLong_FromLongLong(v);
        items[1] = items[0] ? read_model(r, &ok) : NULL;
        out = make(classes[2], READ, items, 2);
        break;
    case 'p':
    case 'x':
        items[0] = read_ids(r);
        out = make(classes[t[0] == 'p' ? 3 : 4], IDS, items, 1);
        break;
    case 'a':
        if (!read_i64(r, &v))
            return NULL;
        items[0] = PyLong_FromLongLong(v);
        out = make(classes[5], CHARGE, items, 1);
        break;
    case 'n':
        items[0] = read_text(r, limits[1]);
        out = make(classes[6], NOTE, items, 1);
        break;
    case 'g':
        items[0] = read_text(r, limits[2]);
        items[1] = items[0] ? read_model(r, &ok) : NULL;
        if (items[1] != NULL && read_i64(r, &v))
            items[2] = PyLong_FromLongLong(v);
        out = make(classes[7], GENERATE, items, 3);
        break;
    case '=':
        items[1] = read_text(r, limits[0]);
        items[2] = items[1] ? read_text(r, limits[1]) : NULL;
        if (items[1] != NULL && items[2] != NULL)
            out = Py_BuildValue("(sOO)", "=", items[1], items[2]);
        break;
    case '!':
    case '?':
        items[1] = read_text(r, limits[1]);
        if (items[1] != NULL)
            out = Py_BuildValue("(sO)", t[0] == '!' ? "!" : "?", items[1]);
        break;
    default:
        break;
    }
    for (int j = 0; j < 3; j++)
        Py_XDECREF(items[j]);
    (void)ok;
    return out;
}

static PyObject *
decode_round(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 14) {
        PyErr_SetString(PyExc_TypeError, "decode_round() takes exactly 14 arguments");
        return NULL;
    }
    Py_ssize_t max_ids = PyLong_AsSsize_t(args[13]);
    if (max_ids < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "decode_round: max_ids must be >= 0");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    Py_ssize_t n = PyLong_AsSsize_t(args[1]);
    Py_ssize_t limits[3];
    for (int j = 0; j < 3; j++)
        limits[j] = PyLong_AsSsize_t(args[10 + j]);
    PyObject *out = NULL;
    if (n < 0 || PyErr_Occurred())
        goto done;
    out = PyList_New(n);
    if (out == NULL)
        goto done;
    reader r = {(const unsigned char *)view.buf, (const unsigned char *)view.buf + view.len,
                max_ids};
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *entry = decode_entry(&r, args + 2, limits);
        if (entry == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, j, entry);
    }
    if (out != NULL && r.p != r.end)
        Py_CLEAR(out);
done:
    PyBuffer_Release(&view);
    if (out == NULL) {
        if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_MemoryError))
            PyErr_Clear();
        if (!PyErr_Occurred())
            Py_RETURN_NONE;
    }
    return out;
}

static PyObject *
pick(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_Check(args[0]) || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "pick(values: list, ids: tuple)");
        return NULL;
    }
    PyObject *values = args[0], *ids = args[1];
    Py_ssize_t n = PyTuple_GET_SIZE(ids);
    PyObject *out = PyTuple_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t j = 0; j < n; j++) {
        Py_ssize_t i = PyLong_AsSsize_t(PyTuple_GET_ITEM(ids, j));
        if (i == -1 && PyErr_Occurred()) {
            Py_DECREF(out);
            return NULL;
        }
        if (i < 0 || i >= PyList_GET_SIZE(values)) {
            Py_DECREF(out);
            PyErr_Format(PyExc_IndexError, "branch index %zd out of range", i);
            return NULL;
        }
        PyObject *v = PyList_GET_ITEM(values, i);
        Py_INCREF(v);
        PyTuple_SET_ITEM(out, j, v);
    }
    return out;
}


/* ---- ReplayCore: the parent's engine of one plain replay episode ----------------------
 *
 * ReplayCore(probes, lengths, totals, finals, delta, probe_cost, max_branches, model,
 *            explain)
 *
 * The accounting of autotts.envs.replay._Episode (its specification; tests play both) without the
 * controller-facing state, which only the worker keeps: private depths and flags per branch,
 * the token totals, and each action's observation in the fast form of
 * autotts/sandbox/protocol.py, (reply, tokens, probe_tokens, None, answers, ends). An action
 * the engine refuses changes nothing and calls explain(kind, ...), which raises the
 * engine's own ActionError: ("bad_id", i, n_opened), ("inactive", i, pruned),
 * ("count", k), ("model", model), ("limit", k, start, max), ("steps", ids, steps),
 * ("charge", i, n_opened). Arguments are the decoder's exact types (tuples of ints, bools).
 */

typedef struct {
    PyObject_HEAD
    Py_ssize_t n, opened, n_finished;
    long long delta, probe_cost, tokens, probe_tokens, serial;
    long long steps, named; /* the episode's actions, and the branch ids they named */
    long long *length, *total, *depth, *stamp, *ahead;
    char *live, *done, *pruned;
    PyObject *probes, *finals, *model, *explain;
} Core;

static void
core_dealloc(Core *c)
{
    PyMem_Free(c->length);
    PyMem_Free(c->live);
    Py_XDECREF(c->probes);
    Py_XDECREF(c->finals);
    Py_XDECREF(c->model);
    Py_XDECREF(c->explain);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyObject *
core_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *probes, *lengths, *totals, *finals, *model, *explain;
    long long delta, probe_cost;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "O!O!O!O!LLnUO", &PyTuple_Type, &probes, &PyTuple_Type,
                          &lengths, &PyTuple_Type, &totals, &PyTuple_Type, &finals, &delta,
                          &probe_cost, &n, &model, &explain))
        return NULL;
    Py_ssize_t size = PyTuple_GET_SIZE(lengths);
    if (PyTuple_GET_SIZE(probes) != size || PyTuple_GET_SIZE(totals) != size ||
        PyTuple_GET_SIZE(finals) != size || n < 0 || n > size) {
        PyErr_SetString(PyExc_ValueError, "ReplayCore: branch data of unequal sizes");
        return NULL;
    }
    Core *c = (Core *)type->tp_alloc(type, 0);
    if (c == NULL)
        return NULL;
    c->n = n;
    c->delta = delta;
    c->probe_cost = probe_cost;
    c->length = PyMem_Malloc(5 * (size_t)(n + 1) * sizeof(long long));
    c->live = PyMem_Malloc(3 * (size_t)(n + 1));
    if (c->length == NULL || c->live == NULL) {
        Py_DECREF(c);
        return PyErr_NoMemory();
    }
    c->total = c->length + n + 1;
    c->depth = c->total + n + 1;
    c->stamp = c->depth + n + 1; /* which action last looked at a branch, and its depth then */
    c->ahead = c->stamp + n + 1;
    for (Py_ssize_t i = 0; i <= n; i++)
        c->stamp[i] = 0;
    c->done = c->live + n + 1;
    c->pruned = c->done + n + 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        c->length[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(lengths, i));
        c->total[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(totals, i));
        if (!PyTuple_Check(PyTuple_GET_ITEM(probes, i)) ||
            PyTuple_GET_SIZE(PyTuple_GET_ITEM(probes, i)) != c->length[i]) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "ReplayCore: probes must match lengths");
            Py_DECREF(c);
            return NULL;
        }
    }
    if (PyErr_Occurred()) {
        Py_DECREF(c);
        return NULL;
    }
    c->probes = probes;
    c->finals = finals;
    c->model = model;
    c->explain = explain;
    Py_INCREF(probes);
    Py_INCREF(finals);
    Py_INCREF(model);
    Py_INCREF(explain);
    return (PyObject *)c;
}

/* calls explain(...) (which raises) and returns NULL */
static PyObject *
refuse(Core *c, const char *format, ...)
{
    va_list va;
    va_start(va, format);
    PyObject *args = Py_VaBuildValue(format, va);
    va_end(va);
    if (args == NULL)
        return NULL;
    PyObject *r = PyObject_CallObject(c->explain, args);
    Py_DECREF(args);
    if (r != NULL) {
        Py_DECREF(r);
        PyErr_SetString(PyExc_RuntimeError, "ReplayCore: explain() must raise");
    }
    return NULL;
}

static PyObject *
observation(Core *c, PyObject *reply, PyObject *answers, PyObject *ends)
{
    return Py_BuildValue("(OLLOOO)", reply, c->tokens, c->probe_tokens, Py_None, answers, ends);
}

static PyObject *
new_ids(Py_ssize_t start, Py_ssize_t end)
{
    PyObject *ids = PyList_New(end - start);
    for (Py_ssize_t i = start; ids != NULL && i < end; i++) {
        PyObject *v = PyLong_FromSsize_t(i);
        if (v == NULL) {
            Py_CLEAR(ids);
            break;
        }
        PyList_SET_ITEM(ids, i - start, v);
    }
    return ids;
}

/* The checks of _Episode._reserve; 0 with *start set, or -1 (error raised). */
static int
reserve(Core *c, long long k, PyObject *model, Py_ssize_t *start)
{
    PyObject *r = NULL;
    *start = c->opened;
    if (k < 0)
        r = refuse(c, "(sL)", "count", k);
    else if (model != Py_None && PyUnicode_Compare(model, c->model) != 0)
        r = PyErr_Occurred() ? NULL : refuse(c, "(sO)", "model", model);
    else if (k > c->n - c->opened)
        r = refuse(c, "(sLnn)", "limit", k, c->opened, c->n);
    else
        return 0;
    (void)r;
    return -1;
}

/* extend: the core of Continue and Branch (see _Episode.extend) */
static PyObject *
extend(Core *c, PyObject *ids, PyObject *steps, int probe, PyObject *reply)
{
    Py_ssize_t n = PyTuple_GET_SIZE(ids);
    int one = PyLong_CheckExact(steps);
    long long nominal = 0, k_all = one ? PyLong_AsLongLong(steps) : 0;
    if (one ? (k_all < 1 || k_all > MAX_STEPS) :
              (!PyTuple_Check(steps) || PyTuple_GET_SIZE(steps) != n))
        return refuse(c, "(sOO)", "steps", ids, steps);
    if (!one) {
        for (Py_ssize_t j = 0; j < n; j++) {
            long long k = PyLong_AsLongLong(PyTuple_GET_ITEM(steps, j));
            if (k < 1 || k > MAX_STEPS) {
                PyErr_Clear();
                return refuse(c, "(sOO)", "steps", ids, steps);
            }
            nominal += k;
        }
    }
    else
        nominal = k_all * n;
    /* check first, so that a refused action changes nothing; a branch named twice moves
     * twice, and one that finished at its first mention is inactive at its second */
    long long serial = ++c->serial;
    for (Py_ssize_t j = 0; j < n; j++) {
        long long i = PyLong_AsLongLong(PyTuple_GET_ITEM(ids, j));
        if (i < 0 || i >= c->opened)
            return refuse(c, "(sLn)", "bad_id", i, c->opened);
        if (c->stamp[i] != serial) {
            c->stamp[i] = serial;
            c->ahead[i] = c->depth[i];
        }
        if (!c->live[i] || c->ahead[i] > c->length[i])
            return refuse(c, "(sLi)", "inactive", i, (int)c->pruned[i]);
        c->ahead[i] += one ? k_all : PyLong_AsLongLong(PyTuple_GET_ITEM(steps, j));
    }
    PyObject *answers = probe ? PyTuple_New(n) : Py_None;
    PyObject *ends = PyList_New(0);
    if (answers == NULL || ends == NULL) {
        Py_XDECREF(ends);
        if (probe)
            Py_XDECREF(answers);
        return NULL;
    }
    if (!probe)
        Py_INCREF(Py_None);
    long long shortfall = 0, finishing = 0;
    for (Py_ssize_t j = 0; j < n; j++) {
        Py_ssize_t i = (Py_ssize_t)PyLong_AsLongLong(PyTuple_GET_ITEM(ids, j));
        long long k = one ? k_all : PyLong_AsLongLong(PyTuple_GET_ITEM(steps, j));
        long long d = c->depth[i] + k;
        PyObject *a;
        if (d > c->length[i]) { /* finishes: the rest of the branch, its final revealed */
            long long intervals = c->length[i] - c->depth[i];
            long long rest = c->total[i] - c->delta * c->length[i];
            shortfall += (k - intervals) * c->delta - (rest > 0 ? rest : 0);
            c->depth[i] = c->length[i] + 1;
            c->live[i] = 0;
            c->done[i] = 1;
            c->n_finished++;
            finishing++;
            a = PyTuple_GET_ITEM(c->finals, i);
            PyObject *end = Py_BuildValue("(nLO)", j, c->depth[i], a);
            if (end == NULL || PyList_Append(ends, end) < 0) {
                Py_XDECREF(end);
                goto fail;
            }
            Py_DECREF(end);
        }
        else {
            c->depth[i] = d;
            a = PyTuple_GET_ITEM(PyTuple_GET_ITEM(c->probes, i), d - 1);
        }
        if (probe) {
            Py_INCREF(a);
            PyTuple_SET_ITEM(answers, j, a);
        }
    }
    long long probed = probe ? n - finishing : 0;
    c->tokens += c->delta * nominal - shortfall + probed * c->probe_cost;
    c->probe_tokens += probed * c->probe_cost;
    PyObject *ends_tuple = PyList_AsTuple(ends);
    Py_DECREF(ends);
    if (ends_tuple == NULL) {
        Py_DECREF(answers);
        return NULL;
    }
    PyObject *out = observation(c, reply, answers, ends_tuple);
    Py_DECREF(answers);
    Py_DECREF(ends_tuple);
    return out;
fail:
    Py_DECREF(ends);
    Py_DECREF(answers);
    return NULL;
}

static PyObject *
core_continue(Core *c, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyTuple_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "continue_(ids: tuple, steps, probe)");
        return NULL;
    }
    return extend(c, args[0], args[1], args[2] == Py_True, Py_None);
}

static PyObject *
core_branch(Core *c, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "branch(k, probe, model)");
        return NULL;
    }
    long long k = PyLong_AsLongLong(args[0]);
    Py_ssize_t start;
    if ((k == -1 && PyErr_Occurred()) || reserve(c, k, args[2], &start) < 0)
        return NULL;
    for (Py_ssize_t i = start; i < start + k; i++) {
        c->depth[i] = 0;
        c->live[i] = 1;
        c->done[i] = c->pruned[i] = 0;
    }
    c->opened = start + k;
    PyObject *reply = new_ids(start, start + k);
    PyObject *ids = reply ? PyList_AsTuple(reply) : NULL;
    PyObject *one = PyLong_FromLong(1);
    PyObject *out = ids && one ? extend(c, ids, one, args[1] == Py_True, reply) : NULL;
    Py_XDECREF(reply);
    Py_XDECREF(ids);
    Py_XDECREF(one);
    return out;
}

static PyObject *
core_read(Core *c, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "read(k, model)");
        return NULL;
    }
    long long k = PyLong_AsLongLong(args[0]);
    Py_ssize_t start;
    if ((k == -1 && PyErr_Occurred()) || reserve(c, k, args[1], &start) < 0)
        return NULL;
    PyObject *ends = PyTuple_New(k);
    PyObject *reply = new_ids(start, start + k);
    if (ends == NULL || reply == NULL) {
        Py_XDECREF(ends);
        Py_XDECREF(reply);
        return NULL;
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        Py_ssize_t i = start + j;
        c->depth[i] = c->length[i] + 1;
        c->live[i] = 0;
        c->done[i] = 1;
        c->pruned[i] = 0;
        c->tokens += c->total[i];
        PyObject *end = Py_BuildValue("(nLO)", j, c->depth[i], PyTuple_GET_ITEM(c->finals, i));
        if (end == NULL) {
            Py_DECREF(ends);
            Py_DECREF(reply);
            return NULL;
        }
        PyTuple_SET_ITEM(ends, j, end);
    }
    c->opened = start + k;
    c->n_finished += k;
    PyObject *out = observation(c, reply, Py_None, ends);
    Py_DECREF(ends);
    Py_DECREF(reply);
    return out;
}

/* Probe (reveal=1) and Prune (reveal=0) */
static PyObject *
probe_or_prune(Core *c, PyObject *ids, int reveal)
{
    Py_ssize_t n = PyTuple_GET_SIZE(ids);
    for (Py_ssize_t j = 0; j < n; j++) {
        long long i = PyLong_AsLongLong(PyTuple_GET_ITEM(ids, j));
        if (i < 0 || i >= c->opened)
            return refuse(c, "(sLn)", "bad_id", i, c->opened);
    }
    PyObject *answers = reveal ? PyTuple_New(n) : Py_None;
    if (answers == NULL)
        return NULL;
    if (!reveal)
        Py_INCREF(Py_None);
    long long probed = 0;
    for (Py_ssize_t j = 0; j < n; j++) {
        Py_ssize_t i = (Py_ssize_t)PyLong_AsLongLong(PyTuple_GET_ITEM(ids, j));
        if (!reveal) {
            c->pruned[i] = 1;
            c->live[i] = 0;
            continue;
        }
        PyObject *a = Py_None;
        if (!c->done[i] && c->depth[i] > 0) {
            a = PyTuple_GET_ITEM(PyTuple_GET_ITEM(c->probes, i), c->depth[i] - 1);
            probed++;
        }
        Py_INCREF(a);
        PyTuple_SET_ITEM(answers, j, a);
    }
    c->tokens += probed * c->probe_cost;
    c->probe_tokens += probed * c->probe_cost;
    PyObject *ends = PyTuple_New(0);
    PyObject *out = ends ? observation(c, Py_None, answers, ends) : NULL;
    Py_XDECREF(ends);
    Py_DECREF(answers);
    return out;
}

static PyObject *
core_probe(Core *c, PyObject *ids)
{
    if (!PyTuple_Check(ids)) {
        PyErr_SetString(PyExc_TypeError, "probe(ids: tuple)");
        return NULL;
    }
    return probe_or_prune(c, ids, 1);
}

static PyObject *
core_prune(Core *c, PyObject *ids)
{
    if (!PyTuple_Check(ids)) {
        PyErr_SetString(PyExc_TypeError, "prune(ids: tuple)");
        return NULL;
    }
    return probe_or_prune(c, ids, 0);
}

static PyObject *
core_charge_again(Core *c, PyObject *arg)
{
    long long i = PyLong_AsLongLong(arg);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (i < 0 || i >= c->opened || !c->done[i])
        return refuse(c, "(sLn)", "charge", i, c->opened);
    long long last = c->total[i] - c->delta * c->length[i];
    c->tokens += last > 0 ? last : 0;
    PyObject *ends = PyTuple_New(0);
    PyObject *out = ends ? observation(c, Py_None, Py_None, ends) : NULL;
    Py_XDECREF(ends);
    return out;
}

static PyObject *
core_note(Core *c, PyObject *unused)
{
    PyObject *ends = PyTuple_New(0);
    PyObject *out = ends ? observation(c, Py_None, Py_None, ends) : NULL;
    Py_XDECREF(ends);
    return out;
}

static PyObject *
core_totals(Core *c, PyObject *unused)
{
    return Py_BuildValue("(LLn)", c->tokens, c->probe_tokens, c->opened);
}

static PyMethodDef core_methods[] = {
    {"continue_", (PyCFunction)(void (*)(void))core_continue, METH_FASTCALL, "Continue."},
    {"branch", (PyCFunction)(void (*)(void))core_branch, METH_FASTCALL, "Branch."},
    {"read", (PyCFunction)(void (*)(void))core_read, METH_FASTCALL, "Read."},
    {"probe", (PyCFunction)core_probe, METH_O, "Probe."},
    {"prune", (PyCFunction)core_prune, METH_O, "Prune."},
    {"charge_again", (PyCFunction)core_charge_again, METH_O, "ChargeAgain."},
    {"note", (PyCFunction)core_note, METH_NOARGS, "Note."},
    {"totals", (PyCFunction)core_totals, METH_NOARGS, "(tokens, probe_tokens, opened)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef core_members[] = {
    {"steps", T_LONGLONG, offsetof(Core, steps), 0, "actions taken (refused ones included)"},
    {"named", T_LONGLONG, offsetof(Core, named), 0, "branch ids named by its actions"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "autotts.sandbox._wire.ReplayCore",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = core_new,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_methods = core_methods,
    .tp_members = core_members,
    .tp_doc = "The parent's engine of one plain replay episode (see above).",
};

/* ---- act_round: the common actions of a round on compiled engines ------------------
 *
 * act_round(engines, actions, classes, max_steps, max_named) -> (observations, pending)
 *
 * For each engine that is a ReplayCore and each action (decode_round's objects, exact types
 * and checked values) of classes = (Continue, Branch, Read, Probe, Prune, ChargeAgain, Note):
 * count the step and the ids it names and play it; observations[j] is its observation. Left
 * to the caller, untouched (observations[j] None, j listed in pending): every other engine
 * or entry, an action past max_steps or max_named, and an action the engine refuses (a
 * refused action changes nothing, so the caller plays it again to raise the refusal).
 */
/* the attributes act_round reads of each kind (interned at import) */
static PyObject *NAMES[7][3];

static PyObject *
act_round(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyList_Check(args[0]) || !PyList_Check(args[1]) ||
        PyList_GET_SIZE(args[0]) != PyList_GET_SIZE(args[1]) || !PyTuple_Check(args[2]) ||
        PyTuple_GET_SIZE(args[2]) != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "act_round(engines, actions, classes, max_steps, max_named)");
        return NULL;
    }
    PyObject *engines = args[0], *actions = args[1];
    PyTypeObject *kinds[7];
    for (int t = 0; t < 7; t++)
        kinds[t] = (PyTypeObject *)PyTuple_GET_ITEM(args[2], t);
    long long max_steps = PyLong_AsLongLong(args[3]), max_named = PyLong_AsLongLong(args[4]);
    if (PyErr_Occurred())
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(engines);
    PyObject *observations = PyList_New(n), *pending = PyList_New(0);
    if (observations == NULL || pending == NULL)
        goto fail;
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *engine = PyList_GET_ITEM(engines, j), *action = PyList_GET_ITEM(actions, j);
        PyObject *out = NULL;
        int kind = -1;
        for (int t = 0; t < 7; t++)
            if (Py_TYPE(action) == kinds[t])
                kind = t;
        if (Py_TYPE(engine) == &CoreType && kind >= 0) {
            Core *c = (Core *)engine;
            PyObject *ids = NULL;
            if (kind == 0 || kind == 3 || kind == 4) {
                ids = PyObject_GetAttr(action, NAMES[0][0]);
                if (ids == NULL)
                    goto fail;
                if (!PyTuple_Check(ids)) {
                    Py_DECREF(ids);
                    PyErr_SetString(PyExc_TypeError, "act_round: ids must be a tuple");
                    goto fail;
                }
            }
            long long named = ids ? PyTuple_GET_SIZE(ids) : 0;
            if (c->steps + 1 <= max_steps && c->named + named <= max_named) {
                c->steps++;
                c->named += named;
                PyObject *values[3] = {NULL, NULL, NULL};
                int ok = 1, f = 0;
                if (ids != NULL) /* read above: the first of its fields */
                    values[f++] = Py_NewRef(ids);
                for (; f < 3 && NAMES[kind][f] != NULL; f++)
                    ok = ok && (values[f] = PyObject_GetAttr(action, NAMES[kind][f])) != NULL;
                if (ok) {
                    switch (kind) {
                    case 0: out = core_continue(c, values, 3); break;
                    case 1: out = core_branch(c, values, 3); break;
                    case 2: out = core_read(c, values, 2); break;
                    case 3: out = core_probe(c, ids); break;
                    case 4: out = core_prune(c, ids); break;
                    case 5: out = core_charge_again(c, values[0]); break;
                    default: out = core_note(c, NULL); break;
                    }
                }
                for (int f = 0; f < 3; f++)
                    Py_XDECREF(values[f]);
                if (out == NULL) { /* refused: the caller raises it again */
                    PyErr_Clear();
                    c->steps--;
                    c->named -= named;
                }
            }
            Py_XDECREF(ids);
        }
        if (out == NULL) {
            PyObject *index = PyLong_FromSsize_t(j);
            if (index == NULL || PyList_Append(pending, index) < 0) {
                Py_XDECREF(index);
                goto fail;
            }
            Py_DECREF(index);
            out = Py_NewRef(Py_None);
        }
        PyList_SET_ITEM(observations, j, out);
    }
    PyObject *both = PyTuple_Pack(2, observations, pending);
    Py_DECREF(observations);
    Py_DECREF(pending);
    return both;
fail:
    Py_XDECREF(observations);
    Py_XDECREF(pending);
    return NULL;
}

static PyMethodDef methods[] = {
    {"act_round", (PyCFunction)(void (*)(void))act_round, METH_FASTCALL,
     "The common actions of a round on compiled engines (see above)."},
    {"pick", (PyCFunction)(void (*)(void))pick, METH_FASTCALL, "values[i] for each id, as a tuple."},
    {"encode_ids", (PyCFunction)encode_ids, METH_O, "A round entry's id list (see above)."},
    {"decode_round", (PyCFunction)(void (*)(void))decode_round, METH_FASTCALL,
     "A round frame's entries, or None when malformed."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "autotts.sandbox._wire",
    "Compiled hot paths of the sandbox protocol.", -1, methods,
};

PyMODINIT_FUNC
PyInit__wire(void)
{
    if (PyType_Ready(&CoreType) < 0)
        return NULL;
    const char *const *fields[7] = {CONTINUE, BRANCH, READ, IDS, IDS, CHARGE, NULL};
    const int counts[7] = {3, 3, 2, 1, 1, 1, 0};
    for (int kind = 0; kind < 7; kind++)
        for (int f = 0; f < counts[kind]; f++)
            if ((NAMES[kind][f] = PyUnicode_InternFromString(fields[kind][f])) == NULL)
                return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&CoreType);
    if (PyModule_AddObject(m, "ReplayCore", (PyObject *)&CoreType) < 0) {
        Py_DECREF(&CoreType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
