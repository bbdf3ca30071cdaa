/* The hot loop of replay (autotts/replay.py, _Episode._advance_python) in C.
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

/* replay.MAX_STEPS_PER_ACTION; tests check that both agree. */
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

static int
exec_module(PyObject *module)
{
    return PyModule_AddIntConstant(module, "MAX_STEPS_PER_ACTION", MAX_STEPS_PER_ACTION);
}

static PyMethodDef methods[] = {
    {"advance", (PyCFunction)(void (*)(void))advance, METH_FASTCALL, "Advance replay branches (see the module comment)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "autotts._replay_loop", "Compiled hot loop of autotts.replay.", -1,
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
