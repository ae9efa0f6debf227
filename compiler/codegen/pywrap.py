"""A CPython-calling wrapper for programs of scalars: the whole call in native code.

`NAME_py(PyObject *args, PyTypeObject *scalar) -> PyObject *` takes the
arguments as a tuple of floats, runs NAME_value_and_grad (or NAME_value) on
stack slots and returns a tuple of `scalar` objects (outputs, then
gradients). `scalar` is numpy.float64: a float subclass whose instances are
a float object header followed by the double, made as numpy itself makes
them (the type's generic allocation, then the value at offset 16). Any argument that is not a float
(or float subclass such as numpy.float64) makes it return an empty tuple, and
the Python side falls back to the validating path, which raises a clear error.

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
    as_double = _fn(module, "PyFloat_AsDouble", DOUBLE, [PTR])
    is_subtype = _fn(module, "PyType_IsSubtype", I32, [PTR, PTR])
    new_tuple = _fn(module, "PyTuple_New", PTR, [I64])
    set_item = _fn(module, "PyTuple_SetItem", I32, [PTR, I64, PTR])
    alloc = _fn(module, "PyType_GenericAlloc", PTR, [PTR, I64])
    float_type = module.globals.get("PyFloat_Type") or ir.GlobalVariable(module, ir.IntType(8),
                                                                          "PyFloat_Type")
    float_type.linkage = "external"

    fn = ir.Function(module, ir.FunctionType(PTR, [PTR, PTR]), name)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    reject = fn.append_basic_block("reject")
    rb = ir.IRBuilder(reject)
    rb.ret(rb.call(new_tuple, [ir.Constant(I64, 0)]))
    slots = []
    for i in range(n_args):
        item = b.call(get_item, [fn.args[0], ir.Constant(I64, i)])
        # Py_TYPE(item): ob_type follows the 8-byte ob_refcnt in CPython's object header
        type_ptr = b.load(b.gep(item, [ir.Constant(I64, 8)], source_etype=ir.IntType(8)), typ=PTR)
        exact = b.icmp_unsigned("==", type_ptr, float_type)
        ok_block = fn.append_basic_block(f"arg{i}.ok")
        check_block = fn.append_basic_block(f"arg{i}.subtype")
        b.cbranch(exact, ok_block, check_block)
        b.position_at_end(check_block)
        sub = b.call(is_subtype, [type_ptr, float_type])
        b.cbranch(b.icmp_signed("!=", sub, ir.Constant(I32, 0)), ok_block, reject)
        b.position_at_end(ok_block)
        slot = b.alloca(DOUBLE)
        b.store(b.call(as_double, [item]), slot)
        slots.append(slot)
    outs = [b.alloca(DOUBLE) for _ in range(n_results)]
    b.call(target, slots + outs + [ir.Constant(PTR, None)])
    result = b.call(new_tuple, [ir.Constant(I64, n_results)])
    for j, slot in enumerate(outs):
        obj = b.call(alloc, [fn.args[1], ir.Constant(I64, 0)])
        b.store(b.load(slot, typ=DOUBLE), b.gep(obj, [ir.Constant(I64, FLOAT_VALUE_OFFSET)],
                                                 source_etype=ir.IntType(8)))
        b.call(set_item, [result, ir.Constant(I64, j), obj])
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
