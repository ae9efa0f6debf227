"""A CPython-calling wrapper for programs of scalars: the whole call in native code.

`NAME_py(PyObject *args, PyTypeObject *scalar) -> PyObject *` takes the
arguments as a tuple of floats, runs NAME_value_and_grad (or NAME_value) on
stack slots and returns a tuple of `scalar` objects (outputs, then
gradients). `scalar` is numpy.float64: a float subclass whose instances are
a float object header followed by the double, made as numpy itself makes
them (the type's generic allocation, then the value at offset 16). Any
argument that is not a float or a numpy.float64 makes it return an empty
tuple, and the Python side falls back to the validating path, which converts
it as NumPy does or raises a clear error.

Through ctypes.PYFUNCTYPE this costs a fraction of a microsecond, where a
ctypes call with a pointer per argument costs several. It uses the C API of
the running interpreter, so it exists only in JIT modules, never in AOT
libraries.
"""
from __future__ import annotations

from llvmlite import ir

from chainrule.compiler.codegen.loops import I32, I64, PTR

DOUBLE = ir.DoubleType()
FLOAT_VALUE_OFFSET = 16  # after ob_refcnt and ob_type, as in PyFloatObject
ARRAY_DATA_OFFSET = 16  # PyArrayObject: the object header, then char *data


def _fn(module: ir.Module, name: str, ret, args) -> ir.Function:
    if name in module.globals:
        return module.globals[name]
    return ir.Function(module, ir.FunctionType(ret, args), name)


def emit_wrapper(module: ir.Module, name: str, target: ir.Function, n_args: int,
                 n_results: int) -> ir.Function:
    get_item = _fn(module, "PyTuple_GetItem", PTR, [PTR, I64])
    new_tuple = _fn(module, "PyTuple_New", PTR, [I64])
    set_item = _fn(module, "PyTuple_SetItem", I32, [PTR, I64, PTR])

    fn = ir.Function(module, ir.FunctionType(PTR, [PTR, PTR]), name)
    args, scalar = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    reject = fn.append_basic_block("reject")
    rb = ir.IRBuilder(reject)
    rb.ret(rb.call(new_tuple, [ir.Constant(I64, 0)]))
    items = [b.call(get_item, [args, ir.Constant(I64, i)]) for i in range(n_args)]
    outs = _run(b, target, _unbox_floats(b, items, scalar, reject), n_results)
    result = b.call(new_tuple, [ir.Constant(I64, n_results)])
    for j, slot in enumerate(outs):
        b.call(set_item, [result, ir.Constant(I64, j), _box(b, scalar, slot)])
    b.ret(result)
    return fn


def emit_array_wrapper(module: ir.Module, name: str, target: ir.Function, n_dims: int,
                       n_arrays: int) -> ir.Function:
    """`NAME_py(PyObject *args) -> PyObject *`: call `target` on arrays prepared in Python.

    args is the tuple (dims as ints..., arrays..., workspace address as an int),
    the arrays already checked (dtype, shape, C-contiguous) by the caller. The
    data pointer is read from the array object itself: NumPy's array struct
    starts with the object header and then `data` (what PyArray_DATA reads,
    part of NumPy's ABI). Returns the target's int result. This replaces a
    ctypes conversion per pointer, which costs about a microsecond each. The
    GIL is released around the computation.
    """
    get_item = _fn(module, "PyTuple_GetItem", PTR, [PTR, I64])
    as_long = _fn(module, "PyLong_AsLongLong", I64, [PTR])
    as_ptr = _fn(module, "PyLong_AsVoidPtr", PTR, [PTR])
    from_long = _fn(module, "PyLong_FromLong", PTR, [I64])
    fn = ir.Function(module, ir.FunctionType(PTR, [PTR]), name)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    tup = fn.args[0]
    values = []
    for i in range(n_dims):
        values.append(b.call(as_long, [b.call(get_item, [tup, ir.Constant(I64, i)])]))
    for j in range(n_arrays):
        arr = b.call(get_item, [tup, ir.Constant(I64, n_dims + j)])
        field = b.gep(arr, [ir.Constant(I64, ARRAY_DATA_OFFSET)], source_etype=ir.IntType(8))
        values.append(b.load(field, typ=PTR))
    values.append(b.call(as_ptr, [b.call(get_item, [tup, ir.Constant(I64, n_dims + n_arrays)])]))
    # the computation runs without the GIL: other Python threads go on meanwhile
    save = _fn(module, "PyEval_SaveThread", PTR, [])
    restore = _fn(module, "PyEval_RestoreThread", ir.VoidType(), [PTR])
    state = b.call(save, [])
    rc = b.call(target, values)
    b.call(restore, [state])
    b.ret(b.call(from_long, [b.sext(rc, I64)]))
    return fn


TUPLE_ITEMS_OFFSET = 24  # PyTupleObject: header (16 bytes), ob_size, then ob_item[]
VECTORCALL_OFFSET_FLAG = 1 << 63  # PY_VECTORCALL_ARGUMENTS_OFFSET in nargsf


def emit_vectorcall_wrapper(module: ir.Module, name: str, target: ir.Function, n_args: int,
                            n_outputs: int, n_grads: int) -> ir.Function:
    """`NAME(self, args, nargsf, kwnames)`: a METH_FASTCALL | METH_KEYWORDS method.

    Installed as the Function's own `value` / `value_and_grad` (runtime/
    llvm_backend.py), so a call by keyword never builds a dict: the arguments
    arrive as CPython's vector of objects with a tuple of keyword names. `self`
    is the tuple (names, fallback, numpy.float64, grad names): keyword names are
    matched to `names` by identity (the interned identifiers of a call site),
    else by value. Any other call (a mix of positional and keyword arguments, a
    name that is not matched, an argument that is not a float or a
    numpy.float64) goes to `fallback`, the
    validating Python method, with the same arguments: it gives the same
    result or the same error. Returns the outputs (one scalar or a tuple),
    for `n_grads` > 0 paired with the dict {grad name: gradient}.
    """
    i8 = ir.IntType(8)
    vectorcall = _fn(module, "PyObject_Vectorcall", PTR, [PTR, PTR, I64, PTR])
    new_tuple = _fn(module, "PyTuple_New", PTR, [I64])
    set_item = _fn(module, "PyTuple_SetItem", I32, [PTR, I64, PTR])
    new_dict = _fn(module, "PyDict_New", PTR, [])
    dict_set = _fn(module, "PyDict_SetItem", I32, [PTR, PTR, PTR])
    dec_ref = _fn(module, "Py_DecRef", ir.VoidType(), [PTR])

    fn = ir.Function(module, ir.FunctionType(PTR, [PTR, PTR, I64, PTR]), name)
    this, argv, nargsf, kwnames = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    def item(tup, i):  # PyTuple_GET_ITEM
        return _tuple_item(b, tup, i)

    def size(tup):  # PyTuple_GET_SIZE
        return b.load(b.gep(tup, [ir.Constant(I64, 16)], source_etype=i8), typ=I64)

    fallback_block = fn.append_basic_block("fallback")
    fb = ir.IRBuilder(fallback_block)
    fb.ret(fb.call(vectorcall, [_tuple_item(fb, this, 1), argv, nargsf, kwnames]))
    names, scalar, grad_names = item(this, 0), item(this, 2), item(this, 3)
    nargs = b.and_(nargsf, ir.Constant(I64, ~VECTORCALL_OFFSET_FLAG & (2 ** 64 - 1)))
    values = [b.alloca(PTR) for _ in range(n_args)]
    no_kw = b.icmp_unsigned("==", kwnames, ir.Constant(PTR, None))
    positional, keyword = fn.append_basic_block("positional"), fn.append_basic_block("keyword")
    b.cbranch(no_kw, positional, keyword)

    b.position_at_end(positional)
    checked = fn.append_basic_block("checked")
    ok = b.icmp_unsigned("==", nargs, ir.Constant(I64, n_args))
    pos_ok = fn.append_basic_block("positional.ok")
    b.cbranch(ok, pos_ok, fallback_block)
    b.position_at_end(pos_ok)
    for i, slot in enumerate(values):
        b.store(b.load(b.gep(argv, [ir.Constant(I64, i)], source_etype=PTR), typ=PTR), slot)
    b.branch(checked)

    b.position_at_end(keyword)
    all_kw = b.and_(b.icmp_unsigned("==", nargs, ir.Constant(I64, 0)),
                    b.icmp_unsigned("==", size(kwnames), ir.Constant(I64, n_args)))
    kw_ok = fn.append_basic_block("keyword.ok")
    b.cbranch(all_kw, kw_ok, fallback_block)
    b.position_at_end(kw_ok)
    compare = _fn(module, "PyUnicode_Compare", I32, [PTR, PTR])
    wanted = [item(names, j) for j in range(n_args)]
    for i in range(n_args):  # the i-th keyword goes to the slot of the name it is
        key = item(kwnames, i)
        value = b.load(b.gep(argv, [ir.Constant(I64, i)], source_etype=PTR), typ=PTR)
        found = fn.append_basic_block(f"keyword{i}.found")
        by_value = fn.append_basic_block(f"keyword{i}.by_value")
        matched = _store_where(b, [b.icmp_unsigned("==", key, w) for w in wanted], value, values)
        b.cbranch(matched, found, by_value)
        b.position_at_end(by_value)  # an equal string that is not the interned name
        equal = [b.icmp_signed("==", b.call(compare, [key, w]), ir.Constant(I32, 0))
                 for w in wanted]
        b.cbranch(_store_where(b, equal, value, values), found, fallback_block)
        b.position_at_end(found)
    b.branch(checked)

    b.position_at_end(checked)
    objects = [b.load(slot, typ=PTR) for slot in values]
    outs = _run(b, target, _unbox_floats(b, objects, scalar, fallback_block),
                n_outputs + n_grads)

    if n_outputs == 1:
        result = _box(b, scalar, outs[0])
    else:
        result = b.call(new_tuple, [ir.Constant(I64, n_outputs)])
        for j in range(n_outputs):
            b.call(set_item, [result, ir.Constant(I64, j), _box(b, scalar, outs[j])])
    if n_grads:
        grads = b.call(new_dict, [])
        for j in range(n_grads):
            grad = _box(b, scalar, outs[n_outputs + j])
            b.call(dict_set, [grads, item(grad_names, j), grad])
            b.call(dec_ref, [grad])  # the dict holds its own reference
        pair = b.call(new_tuple, [ir.Constant(I64, 2)])
        b.call(set_item, [pair, ir.Constant(I64, 0), result])
        b.call(set_item, [pair, ir.Constant(I64, 1), grads])
        result = pair
    b.ret(result)
    return fn


def _unbox_floats(b: ir.IRBuilder, objects: list, scalar: ir.Value,
                  reject: ir.Block) -> list:
    """Each object's double in a stack slot. An object that is neither a float nor
    `scalar` (numpy.float64) branches to `reject`: other float subclasses may
    define __float__, so they take the validating path, read as NumPy reads them."""
    module, fn = b.module, b.function
    as_double = _fn(module, "PyFloat_AsDouble", DOUBLE, [PTR])
    float_type = module.globals.get("PyFloat_Type") or ir.GlobalVariable(module, ir.IntType(8),
                                                                          "PyFloat_Type")
    float_type.linkage = "external"
    slots = []
    for i, obj in enumerate(objects):
        # Py_TYPE(obj): ob_type follows the 8-byte ob_refcnt in CPython's object header
        type_ptr = b.load(b.gep(obj, [ir.Constant(I64, 8)], source_etype=ir.IntType(8)), typ=PTR)
        plain = b.or_(b.icmp_unsigned("==", type_ptr, float_type),
                      b.icmp_unsigned("==", type_ptr, scalar))
        ok = fn.append_basic_block(f"arg{i}.ok")
        b.cbranch(plain, ok, reject)
        b.position_at_end(ok)
        slot = b.alloca(DOUBLE)
        b.store(b.call(as_double, [obj]), slot)
        slots.append(slot)
    return slots


def _run(b: ir.IRBuilder, target: ir.Function, inputs: list, n_results: int) -> list:
    """Call the ABI function on stack slots (no workspace: scalars need none);
    returns the result slots."""
    outs = [b.alloca(DOUBLE) for _ in range(n_results)]
    b.call(target, inputs + outs + [ir.Constant(PTR, None)])
    return outs


def _box(b: ir.IRBuilder, scalar: ir.Value, slot: ir.Value) -> ir.Value:
    """A new `scalar` (numpy.float64) object holding the slot's double."""
    alloc = _fn(b.module, "PyType_GenericAlloc", PTR, [PTR, I64])
    obj = b.call(alloc, [scalar, ir.Constant(I64, 0)])
    b.store(b.load(slot, typ=DOUBLE), b.gep(obj, [ir.Constant(I64, FLOAT_VALUE_OFFSET)],
                                             source_etype=ir.IntType(8)))
    return obj


def _store_where(b: ir.IRBuilder, hits: list, value: ir.Value, slots: list) -> ir.Value:
    """Store `value` in the slot whose flag is set; returns whether any is."""
    matched = ir.Constant(ir.IntType(1), 0)
    for hit, slot in zip(hits, slots):
        with b.if_then(hit):
            b.store(value, slot)
        matched = b.or_(matched, hit)
    return matched


def _tuple_item(b: ir.IRBuilder, tup: ir.Value, i: int) -> ir.Value:
    return b.load(b.gep(tup, [ir.Constant(I64, TUPLE_ITEMS_OFFSET + 8 * i)],
                        source_etype=ir.IntType(8)), typ=PTR)
