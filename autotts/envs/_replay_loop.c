/* The hot loop of replay (autotts/envs/replay.py, _Episode._advance_python) in C.
 *
 * advance(probes, depth, live, visible_depth, answer, history, on_inactive,
 *         ids, steps, probe) -> (int, list)
 *
 * (The episode's own lists come first, so an episode binds them once with functools.partial.)
 *
 * Advances each branch ids[j] by steps (an int, or steps[j]) intervals; returns
 * (intervals requested in all, positions of branches that reached their end). Steps that are
 * not built-in ints in 1..MAX_STEPS_PER_ACTION (one per id) raise ValueError, and ids that are
 * not built-in ints (bools and int subclasses included) raise TypeError, before anything moves. A branch whose new
 * depth stays within its probes gets depth[i] (the engine's own) and visible_depth[i] (the
 * controller's mirror) updated and, when probe is true, the probe at the new depth revealed
 * into answer[i] and appended to history[i]. Branches that would run
 * past their last probe are marked not live and listed (as positions j in ids, in order)
 * for the caller to finish. An inactive branch (live[i] false) calls on_inactive(i), which raises.
 * Any index out of range raises IndexError; a non-int id or step raises TypeError. The pure
 * Python version in replay.py is the specification; tests run both and compare.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* engine.MAX_STEPS_PER_ACTION; tests check that both agree. */
#define MAX_STEPS_PER_ACTION 1000000

static int
list_index_ok(PyObject *list, Py_ssize_t i)
{
    if (!PyList_Check(list) || i < 0 || i >= PyList_GET_SIZE(list)) {
        PyErr_Format(PyExc_IndexError, "branch index %zd out of range", i);
        return 0;
    }
    return 1;
}

/* list[i] = item (a new reference), or -1 with IndexError. */
static inline int
replace_item(PyObject *list, Py_ssize_t i, PyObject *item)
{
    if (!list_index_ok(list, i))
        return -1;
    PyObject *old = PyList_GET_ITEM(list, i);
    Py_INCREF(item);
    PyList_SET_ITEM(list, i, item);
    Py_DECREF(old);
    return 0;
}

static PyObject *
advance(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "advance() takes exactly 10 arguments");
        return NULL;
    }
    PyObject *probes = args[0], *depth = args[1], *live = args[2], *visible = args[3],
             *answer = args[4], *history = args[5], *on_inactive = args[6], *ids = args[7],
             *steps = args[8];
    int probe = PyObject_IsTrue(args[9]);
    if (probe < 0)
        return NULL;
    Py_ssize_t k_all = -1, nominal = 0;
    PyObject *seq = PySequence_Fast(ids, "branch ids must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *step_seq = NULL;
    if (PyLong_CheckExact(steps)) {
        k_all = PyLong_AsSsize_t(steps);
        if (k_all < 1 || k_all > MAX_STEPS_PER_ACTION)
            goto bad_steps;
        nominal = k_all * n;
    }
    else {
        step_seq = PySequence_Fast(steps, "steps");
        if (step_seq == NULL || PySequence_Fast_GET_SIZE(step_seq) != n)
            goto bad_steps;
        for (Py_ssize_t j = 0; j < n; j++) {
            PyObject *k_obj = PySequence_Fast_GET_ITEM(step_seq, j);
            Py_ssize_t k = PyLong_CheckExact(k_obj) ? PyLong_AsSsize_t(k_obj) : -1;
            if (k < 1 || k > MAX_STEPS_PER_ACTION)
                goto bad_steps;
            nominal += k;
        }
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *id_obj = PySequence_Fast_GET_ITEM(seq, j);
        if (!PyLong_CheckExact(id_obj)) {
            PyErr_Format(PyExc_TypeError, "branch ids must be ints, got %.50s",
                         Py_TYPE(id_obj)->tp_name);
            goto fail;
        }
    }
    if (!PyTuple_Check(probes)) {
        PyErr_SetString(PyExc_TypeError, "probes must be a tuple");
        goto fail;
    }
    PyObject *finishing = PyList_New(0);
    if (finishing == NULL)
        goto fail;
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *id_obj = PySequence_Fast_GET_ITEM(seq, j);
        Py_ssize_t i = PyLong_AsSsize_t(id_obj);
        if (i == -1 && PyErr_Occurred()) { /* too large for an index: out of range */
            PyErr_Clear();
            PyErr_SetString(PyExc_IndexError, "branch index out of range");
            goto fail_list;
        }
        if (!list_index_ok(live, i))
            goto fail_list;
        if (PyList_GET_ITEM(live, i) != Py_True) {
            PyObject *r = PyObject_CallOneArg(on_inactive, id_obj);
            if (r == NULL)
                goto fail_list;
            Py_DECREF(r);
            PyErr_SetString(PyExc_RuntimeError, "on_inactive must raise");
            goto fail_list;
        }
        Py_ssize_t k = k_all;
        if (k < 0)
            k = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(step_seq, j)); /* checked above */
        if (!list_index_ok(depth, i) || !list_index_ok(history, i))
            goto fail_list;
        if (i >= PyTuple_GET_SIZE(probes)) {
            PyErr_Format(PyExc_IndexError, "branch index %zd out of range", i);
            goto fail_list;
        }
        PyObject *d_obj = PyList_GET_ITEM(depth, i);
        Py_ssize_t d = PyLong_AsSsize_t(d_obj);
        if (d == -1 && PyErr_Occurred())
            goto fail_list;
        d += k;
        if (d < 1) {
            PyErr_SetString(PyExc_ValueError, "corrupted replay depth (below zero)");
            goto fail_list;
        }
        PyObject *branch_probes = PyTuple_GET_ITEM(probes, i);
        if (!PyTuple_Check(branch_probes)) {
            PyErr_SetString(PyExc_TypeError, "each branch's probes must be a tuple");
            goto fail_list;
        }
        if (d > PyTuple_GET_SIZE(branch_probes)) {
            /* No longer live: the caller finishes it, and a repeated id is an error. */
            if (replace_item(live, i, Py_False) < 0)
                goto fail_list;
            PyObject *pos = PyLong_FromSsize_t(j);
            if (pos == NULL || PyList_Append(finishing, pos) < 0) {
                Py_XDECREF(pos);
                goto fail_list;
            }
            Py_DECREF(pos);
            continue;
        }
        PyObject *a = probe ? PyTuple_GET_ITEM(branch_probes, d - 1) : NULL;
        if (a != NULL) { /* first, while history[i] is certainly alive */
            PyObject *seen = PyList_GET_ITEM(history, i);
            if (!PyList_Check(seen)) {
                PyErr_SetString(PyExc_TypeError, "history entries must be lists");
                goto fail_list;
            }
            if (PyList_Append(seen, a) < 0)
                goto fail_list;
        }
        PyObject *new_depth = PyLong_FromSsize_t(d);
        if (new_depth == NULL)
            goto fail_list;
        /* Releasing an old item the controller put there may run its code: re-check sizes. */
        int failed = replace_item(depth, i, new_depth) < 0 ||
                     replace_item(visible, i, new_depth) < 0 ||
                     (a != NULL && replace_item(answer, i, a) < 0);
        Py_DECREF(new_depth);
        if (failed)
            goto fail_list;
    }
    Py_DECREF(seq);
    Py_XDECREF(step_seq);
    return Py_BuildValue("nN", nominal, finishing);

bad_steps:
    PyErr_Clear();
    PyErr_SetString(PyExc_ValueError, "steps must be an int >= 1 or one such int per id");
    goto fail;
fail_list:
    Py_DECREF(finishing);
fail:
    Py_DECREF(seq);
    Py_XDECREF(step_seq);
    return NULL;
}


/* ---- the sandbox's action strings (autotts/sandbox/protocol.py is the specification) ----
 *
 * decode_unit (below) replays an action string for its cost (and, on request, its action
 * log). "Not handled here" is a malformed entry, an action the engine would refuse, a note or
 * a named model; the caller then runs the Python specification, which gives the exact error
 * (or the result).
 *
 * encode_log(log, wide) -> str or None: the action string of an action log (None for logs
 * with notes or named models, which the Python encoder handles).
 */

static int
hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Parses up to 7 decimal digits at *p; -1 when there are none or more than 7. */
static long long
read_decimal(const char **p, const char *end)
{
    long long v = 0;
    int n = 0;
    while (*p < end && **p >= '0' && **p <= '9') {
        if (++n > 7)
            return -1;
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    return n ? v : -1;
}

typedef struct {
    Py_ssize_t n, opened, max_branches;
    long long delta, probe_cost, tokens, probe_tokens;
    long long *length, *total, *depth;
    char *live, *done;
} replay_state;

/* Advance ids (hex text [h, h_end)) by steps; steps_list (may be NULL) holds one per id. */
static int
replay_extend(replay_state *st, const char *h, const char *h_end, int width, long long k_all,
              const long long *steps_list, Py_ssize_t n_steps, int probe)
{
    Py_ssize_t n_ids = (h_end - h) / width;
    if ((h_end - h) % width || (steps_list != NULL && n_steps != n_ids))
        return -1;
    long long nominal = 0, shortfall = 0, finished = 0;
    for (Py_ssize_t j = 0; j < n_ids; j++) {
        long long i = 0;
        for (int c = 0; c < width; c++) {
            int v = hex_value(h[j * width + c]);
            if (v < 0)
                return -1;
            i = i * 16 + v;
        }
        long long k = steps_list ? steps_list[j] : k_all;
        if (k < 1 || k > MAX_STEPS_PER_ACTION || i >= st->opened || !st->live[i])
            return -1;
        nominal += k;
        long long d = st->depth[i] + k;
        if (d > st->length[i]) {
            long long intervals = st->length[i] - st->depth[i];
            long long rest = st->total[i] - st->delta * st->length[i];
            shortfall += (k - intervals) * st->delta - (rest > 0 ? rest : 0);
            st->depth[i] = st->length[i] + 1;
            st->live[i] = 0;
            st->done[i] = 1;
            finished++;
        }
        else
            st->depth[i] = d;
    }
    long long probe_part = probe ? (n_ids - finished) * st->probe_cost : 0;
    st->tokens += st->delta * nominal - shortfall + probe_part;
    st->probe_tokens += probe_part;
    return 0;
}

static int
replay_open(replay_state *st, long long k, Py_ssize_t *start)
{
    if (k < 0 || st->opened + k > st->max_branches)
        return -1;
    *start = st->opened;
    for (Py_ssize_t i = st->opened; i < st->opened + k; i++) {
        st->depth[i] = 0;
        st->live[i] = 1;
        st->done[i] = 0;
    }
    st->opened += k;
    return 0;
}

/* Probe (prune=0) or prune (prune=1) the ids of [h, h_end). */
static int
replay_mark(replay_state *st, const char *h, const char *h_end, int width, int prune)
{
    if ((h_end - h) % width)
        return -1;
    long long probed = 0;
    for (const char *q = h; q < h_end; q += width) {
        long long i = 0;
        for (int c = 0; c < width; c++) {
            int v = hex_value(q[c]);
            if (v < 0)
                return -1;
            i = i * 16 + v;
        }
        if (i >= st->opened)
            return -1;
        if (prune)
            st->live[i] = 0;
        else if (!st->done[i] && st->depth[i] != 0)
            probed++;
    }
    st->tokens += probed * st->probe_cost;
    st->probe_tokens += probed * st->probe_cost;
    return 0;
}

/* What one replayed entry was, for the action log: its code, probe flag, ids (a hex span, or
 * the k new ids from start) and steps (k_all, or steps[0..n_steps)). */
typedef struct {
    char code;
    int probe, width;
    const char *h, *h_end;
    Py_ssize_t start, k;
    long long k_all;
    const long long *steps;
    Py_ssize_t n_steps;
} entry_info;

static int
replay_entry(replay_state *st, const char *p, const char *end, int width, long long *steps_buf,
             Py_ssize_t steps_cap, entry_info *e)
{
    char code = *p++;
    e->code = code;
    e->width = width;
    e->probe = 0;
    e->h = e->h_end = NULL;
    e->steps = NULL;
    if (code == 'c') {
        if (p >= end || (*p != '0' && *p != '1'))
            return -1;
        int probe = *p++ == '1';
        long long k_all = 0;
        Py_ssize_t n_steps = 0;
        const long long *list = NULL;
        if (p < end && *p == '[') {
            p++;
            for (;;) {
                long long v = read_decimal(&p, end);
                if (v < 0 || n_steps >= steps_cap)
                    return -1;
                steps_buf[n_steps++] = v;
                if (p < end && *p == ',') {
                    p++;
                    continue;
                }
                if (p < end && *p == ']') {
                    p++;
                    break;
                }
                return -1;
            }
            list = steps_buf;
        }
        else if ((k_all = read_decimal(&p, end)) < 0)
            return -1;
        if (p >= end || *p != ':')
            return -1;
        p++;
        e->probe = probe;
        e->h = p;
        e->h_end = end;
        e->k_all = k_all;
        e->steps = list;
        e->n_steps = n_steps;
        return replay_extend(st, p, end, width, k_all, list, n_steps, probe);
    }
    if (code == 'b' || code == 'r') {
        int probe = 0;
        if (code == 'b') {
            if (p >= end || (*p != '0' && *p != '1'))
                return -1;
            probe = *p++ == '1';
        }
        long long k = read_decimal(&p, end);
        Py_ssize_t start;
        if (k < 0 || p != end || replay_open(st, k, &start) < 0)
            return -1;
        e->probe = probe;
        e->start = start;
        e->k = k;
        if (code == 'r') {
            for (Py_ssize_t i = start; i < start + k; i++) {
                st->depth[i] = st->length[i] + 1;
                st->live[i] = 0;
                st->done[i] = 1;
                st->tokens += st->total[i];
            }
            return 0;
        }
        /* the new ids, as hex, are start..start+k: advance them one interval each */
        long long nominal = k, shortfall = 0, finished = 0;
        for (Py_ssize_t i = start; i < start + k; i++) {
            if (1 > st->length[i]) { /* no probes: the first interval finishes it */
                long long rest = st->total[i] - st->delta * st->length[i];
                shortfall += (1 - st->length[i]) * st->delta - (rest > 0 ? rest : 0);
                st->depth[i] = st->length[i] + 1;
                st->live[i] = 0;
                st->done[i] = 1;
                finished++;
            }
            else
                st->depth[i] = 1;
        }
        long long probe_part = probe ? (k - finished) * st->probe_cost : 0;
        st->tokens += st->delta * nominal - shortfall + probe_part;
        st->probe_tokens += probe_part;
        return 0;
    }
    if ((code == 'p' || code == 'x') && p < end && *p == ':') {
        e->probe = code == 'p';
        e->h = p + 1;
        e->h_end = end;
        return replay_mark(st, p + 1, end, width, code == 'x');
    }
    return -1; /* notes, named models, anything else: the Python specification decides */
}

static int
tuple_of_longs(PyObject *t, Py_ssize_t n, long long *out)
{
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) < n)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(t, i));
        if (out[i] == -1 && PyErr_Occurred())
            return -1;
    }
    return 0;
}

/* A tuple of n ints, the j-th being value(e, j). */
static PyObject *
int_tuple(Py_ssize_t n, long long (*value)(const entry_info *, Py_ssize_t), const entry_info *e)
{
    PyObject *t = PyTuple_New(n);
    for (Py_ssize_t j = 0; t != NULL && j < n; j++) {
        PyObject *v = PyLong_FromLongLong(value(e, j));
        if (v == NULL)
            Py_CLEAR(t);
        else
            PyTuple_SET_ITEM(t, j, v);
    }
    return t;
}

static long long
hex_id(const entry_info *e, Py_ssize_t j)
{
    long long i = 0;
    for (int c = 0; c < e->width; c++)
        i = i * 16 + hex_value(e->h[j * e->width + c]); /* checked by the replay */
    return i;
}

static long long
new_id(const entry_info *e, Py_ssize_t j)
{
    return e->start + j;
}

static long long
step_of(const entry_info *e, Py_ssize_t j)
{
    return e->steps[j];
}

/* The log entry (event, ids, arg, probe, tokens_after) of protocol.replay_actions. */
static PyObject *
log_entry(const entry_info *e, long long tokens)
{
    const char *event;
    PyObject *ids, *arg;
    if (e->code == 'b' || e->code == 'r') {
        event = e->code == 'b' ? "branch" : "read";
        ids = int_tuple(e->k, new_id, e);
        arg = Py_None;
        Py_INCREF(arg);
    }
    else {
        event = e->code == 'c' ? "continue" : e->code == 'p' ? "probe" : "prune";
        ids = int_tuple((e->h_end - e->h) / e->width, hex_id, e);
        if (e->code != 'c')
            arg = PyLong_FromLong(0);
        else if (e->steps == NULL)
            arg = PyLong_FromLongLong(e->k_all);
        else
            arg = int_tuple(e->n_steps, step_of, e);
    }
    PyObject *entry = NULL;
    if (ids != NULL && arg != NULL)
        entry = Py_BuildValue("sOOOL", event, ids, arg, e->probe ? Py_True : Py_False, tokens);
    Py_XDECREF(ids);
    Py_XDECREF(arg);
    return entry;
}

/* Replays the action string [text, text + size) on branches of the given lengths and totals
 * (tuples, at least n entries), appending each action's log entry to log (a list) unless it
 * is NULL. Returns 1 with out = tokens, probe_tokens, opened, steps; 0 when the string is
 * not handled here (see above); -1 with a Python error set. */
static int
replay_core(PyObject *lengths, PyObject *totals, long long delta, long long probe_cost,
            Py_ssize_t n, const char *text, Py_ssize_t size, int wide, Py_ssize_t max_steps,
            PyObject *log, long long out[4])
{
    if (n < 0 || !PyTuple_Check(lengths) || PyTuple_GET_SIZE(lengths) < n)
        return 0;
    replay_state st = {0};
    st.max_branches = n;
    st.delta = delta;
    st.probe_cost = probe_cost;
    /* no zeroing needed: a branch's depth and flags are set when it opens, and ids at or
     * past `opened` are refused before they are read */
    long long *numbers = PyMem_Malloc((3 * (size_t)n + (size_t)size / 2 + 2) * sizeof(long long));
    char *flags = PyMem_Malloc(2 * (size_t)n + 1);
    int handled = 0;
    if (numbers == NULL || flags == NULL) {
        PyErr_NoMemory();
        handled = -1;
        goto done;
    }
    st.length = numbers;
    st.total = numbers + n;
    st.depth = numbers + 2 * n;
    long long *steps_buf = numbers + 3 * n;
    st.live = flags;
    st.done = flags + n;
    if (tuple_of_longs(lengths, n, st.length) < 0 || tuple_of_longs(totals, n, st.total) < 0) {
        PyErr_Clear();
        goto done;
    }
    const char *p = text, *end = text + size;
    Py_ssize_t steps = 0;
    int width = wide ? 4 : 2;
    entry_info e;
    while (p < end) {
        const char *stop = memchr(p, ';', end - p);
        if (stop == NULL)
            stop = end;
        if (stop == p || ++steps > max_steps ||
            replay_entry(&st, p, stop, width, steps_buf, size / 2 + 2, &e) < 0)
            goto done;
        if (log != NULL) {
            PyObject *entry = log_entry(&e, st.tokens);
            if (entry == NULL || PyList_Append(log, entry) < 0) {
                Py_XDECREF(entry);
                handled = -1;
                goto done;
            }
            Py_DECREF(entry);
        }
        p = stop;
        if (p < end && ++p == end) /* a trailing separator: malformed */
            goto done;
    }
    out[0] = st.tokens;
    out[1] = st.probe_tokens;
    out[2] = st.opened;
    out[3] = steps;
    handled = 1;
done:
    PyMem_Free(numbers);
    PyMem_Free(flags);
    return handled;
}

/* A hex field of a unit line: NULL with *none = 1 for "-"; NULL with *none = 0 when it is not
 * lowercase hex of UTF-8 text of at most limit characters (or on a Python error, which the
 * caller checks); else the text. */
static PyObject *
hex_text(const char *f, Py_ssize_t len, Py_ssize_t limit, int *none)
{
    *none = len == 1 && f[0] == '-';
    if (*none || len % 2 || len > 8 * limit)
        return NULL;
    char small[512];
    char *raw = len / 2 <= (Py_ssize_t)sizeof small ? small : PyMem_Malloc(len / 2 + 1);
    if (raw == NULL)
        return PyErr_NoMemory();
    PyObject *text = NULL;
    for (Py_ssize_t i = 0; i < len; i += 2) {
        int hi = hex_value(f[i]), lo = hex_value(f[i + 1]);
        if (hi < 0 || lo < 0)
            goto done;
        raw[i / 2] = (char)(hi * 16 + lo);
    }
    text = PyUnicode_DecodeUTF8(raw, len / 2, NULL);
    if (text == NULL)
        PyErr_Clear();
    else if (PyUnicode_GET_LENGTH(text) > limit)
        Py_CLEAR(text);
done:
    if (raw != small)
        PyMem_Free(raw);
    return text;
}

/* decode_unit(payload, lengths, totals, delta, probe_cost, n_branches, wide, max_steps,
 *             answer_limit, text_limit, keep_log)
 *     -> (answer, error, reason, tokens, probe_tokens, opened, steps, log) or None
 *
 * One unit line after its number (protocol.decode_unit is the specification): four tab-
 * separated fields, answer/error/reason as hex UTF-8 or "-", then the action string, which
 * is replayed for its cost; log is its action log with keep_log, else None. None: not
 * handled here (malformed, notes, named models); the caller runs the specification for the
 * exact error. */
static PyObject *
decode_unit(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "decode_unit() takes a bytes payload and 10 more arguments");
        return NULL;
    }
    long long delta = PyLong_AsLongLong(args[3]);
    long long probe_cost = PyLong_AsLongLong(args[4]);
    Py_ssize_t n = PyLong_AsSsize_t(args[5]);
    int wide = PyObject_IsTrue(args[6]);
    Py_ssize_t max_steps = PyLong_AsSsize_t(args[7]);
    Py_ssize_t answer_limit = PyLong_AsSsize_t(args[8]);
    Py_ssize_t text_limit = PyLong_AsSsize_t(args[9]);
    int keep_log = PyObject_IsTrue(args[10]);
    if (PyErr_Occurred() || wide < 0 || keep_log < 0)
        return NULL;
    const char *data = PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    const char *field[4];
    Py_ssize_t length[4];
    const char *p = data, *end = data + size;
    for (int i = 0; i < 4; i++) {
        const char *tab = i < 3 ? memchr(p, '\t', end - p) : NULL;
        if (i < 3 && tab == NULL)
            Py_RETURN_NONE;
        field[i] = p;
        length[i] = (i < 3 ? tab : end) - p;
        p = i < 3 ? tab + 1 : end;
    }
    /* No scan of the action string here: the replay refuses any byte outside its grammar (a
     * tab, non-ASCII) and more than max_steps entries, which is when the specification
     * refuses it too. */
    PyObject *texts[3] = {NULL, NULL, NULL}, *log = NULL;
    Py_ssize_t limits[3] = {answer_limit, text_limit, text_limit};
    PyObject *result = NULL;
    for (int i = 0; i < 3; i++) {
        int none;
        texts[i] = hex_text(field[i], length[i], limits[i], &none);
        if (texts[i] == NULL && PyErr_Occurred())
            goto done;
        if (texts[i] == NULL && !none)
            goto not_handled;
    }
    if ((texts[0] == NULL) == (texts[1] == NULL))
        goto not_handled;
    if (texts[2] == NULL && (texts[2] = PyUnicode_New(0, 0)) == NULL)
        goto done;
    if (keep_log && (log = PyList_New(0)) == NULL)
        goto done;
    long long out[4];
    int r = replay_core(args[1], args[2], delta, probe_cost, n, field[3], length[3], wide,
                        max_steps, log, out);
    if (r < 0)
        goto done;
    if (r == 0)
        goto not_handled;
    result = Py_BuildValue("OOOLLLLO", texts[0] ? texts[0] : Py_None,
                           texts[1] ? texts[1] : Py_None, texts[2], out[0], out[1], out[2],
                           out[3], log ? log : Py_None);
    goto done;
not_handled:
    result = Py_None;
    Py_INCREF(result);
done:
    for (int i = 0; i < 3; i++)
        Py_XDECREF(texts[i]);
    Py_XDECREF(log);
    return result;
}

typedef struct {
    char *data;
    Py_ssize_t size, cap;
} text_buffer;

static int
put(text_buffer *b, const char *text, Py_ssize_t n)
{
    if (n < 0)
        n = (Py_ssize_t)strlen(text);
    if (b->size + n > b->cap) {
        Py_ssize_t cap = (b->cap + n) * 2 + 64;
        char *data = PyMem_Realloc(b->data, (size_t)cap);
        if (data == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->size, text, (size_t)n);
    b->size += n;
    return 0;
}

/* 0 written, 1 not encodable here (the Python encoder decides), -1 error. */
static int
put_hex_ids(text_buffer *b, PyObject *ids, int wide)
{
    static const char digits[] = "0123456789abcdef";
    char buf[4];
    int n = wide ? 4 : 2;
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(ids); j++) {
        PyObject *item = PyTuple_GET_ITEM(ids, j);
        if (!PyLong_CheckExact(item))
            return 1;
        long v = PyLong_AsLong(item);
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (v < 0 || v >= (wide ? 65536 : 256))
            return 1;
        for (int c = n - 1; c >= 0; c--) {
            buf[c] = digits[v & 15];
            v >>= 4;
        }
        if (put(b, buf, n) < 0)
            return -1;
    }
    return 0;
}

static int
put_number(text_buffer *b, const char *format, PyObject *number)
{
    char buf[32];
    if (!PyLong_CheckExact(number))
        return 1;
    long v = PyLong_AsLong(number);
    if (v == -1 && PyErr_Occurred())
        return -1;
    snprintf(buf, sizeof buf, format, v);
    return put(b, buf, -1);
}

static int
encode_entry(text_buffer *b, PyObject *entry, int wide)
{
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 5)
        return 1;
    PyObject *event = PyTuple_GET_ITEM(entry, 0), *ids = PyTuple_GET_ITEM(entry, 1),
             *arg = PyTuple_GET_ITEM(entry, 2), *flag = PyTuple_GET_ITEM(entry, 3);
    if (!PyUnicode_Check(event) || !PyTuple_Check(ids) || (flag != Py_True && flag != Py_False))
        return 1;
    const char *probe = flag == Py_True ? "1" : "0";
    int r;
    if (PyUnicode_CompareWithASCIIString(event, "continue") == 0) {
        if (put(b, "c", 1) < 0 || put(b, probe, 1) < 0)
            return -1;
        if (PyLong_CheckExact(arg))
            r = put_number(b, "%ld", arg);
        else if (PyTuple_Check(arg) && PyTuple_GET_SIZE(arg) > 0) {
            r = put(b, "[", 1);
            for (Py_ssize_t j = 0; r == 0 && j < PyTuple_GET_SIZE(arg); j++)
                r = put_number(b, j ? ",%ld" : "%ld", PyTuple_GET_ITEM(arg, j));
            if (r == 0)
                r = put(b, "]", 1);
        }
        else
            return 1;
        if (r != 0 || (r = put(b, ":", 1)) != 0)
            return r;
        return put_hex_ids(b, ids, wide);
    }
    int branch = PyUnicode_CompareWithASCIIString(event, "branch") == 0;
    if (branch || PyUnicode_CompareWithASCIIString(event, "read") == 0) {
        if (arg != Py_None)
            return 1; /* a named model */
        char buf[40];
        if (branch)
            snprintf(buf, sizeof buf, "b%s%zd", probe, PyTuple_GET_SIZE(ids));
        else
            snprintf(buf, sizeof buf, "r%zd", PyTuple_GET_SIZE(ids));
        return put(b, buf, -1);
    }
    int prune = PyUnicode_CompareWithASCIIString(event, "prune") == 0;
    if (prune || PyUnicode_CompareWithASCIIString(event, "probe") == 0) {
        if (put(b, prune ? "x:" : "p:", 2) < 0)
            return -1;
        return put_hex_ids(b, ids, wide);
    }
    return 1; /* notes */
}

static PyObject *
encode_log(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !(PyList_Check(args[0]) || PyTuple_Check(args[0]))) {
        PyErr_SetString(PyExc_TypeError, "encode_log(log, wide)");
        return NULL;
    }
    int wide = PyObject_IsTrue(args[1]);
    if (wide < 0)
        return NULL;
    PyObject *log = PySequence_Fast(args[0], "log");
    if (log == NULL)
        return NULL;
    text_buffer b = {NULL, 0, 0};
    PyObject *result = NULL;
    int r = 0;
    for (Py_ssize_t a = 0; r == 0 && a < PySequence_Fast_GET_SIZE(log); a++) {
        if (a > 0 && put(&b, ";", 1) < 0)
            r = -1;
        else
            r = encode_entry(&b, PySequence_Fast_GET_ITEM(log, a), wide);
    }
    if (r == 0)
        result = PyUnicode_DecodeASCII(b.data ? b.data : "", b.size, NULL);
    else if (r > 0) {
        result = Py_None;
        Py_INCREF(result);
    }
    PyMem_Free(b.data);
    Py_DECREF(log);
    return result;
}

static int
exec_module(PyObject *module)
{
    return PyModule_AddIntConstant(module, "MAX_STEPS_PER_ACTION", MAX_STEPS_PER_ACTION);
}

static PyMethodDef methods[] = {
    {"advance", (PyCFunction)(void (*)(void))advance, METH_FASTCALL, "Advance replay branches (see the module comment)."},
    {"decode_unit", (PyCFunction)(void (*)(void))decode_unit, METH_FASTCALL, "One sandbox unit line, replayed (see above)."},
    {"encode_log", (PyCFunction)(void (*)(void))encode_log, METH_FASTCALL, "Action string of an action log (see above)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "autotts.envs._replay_loop", "Compiled hot loop of autotts.envs.replay.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__replay_loop(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && exec_module(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
