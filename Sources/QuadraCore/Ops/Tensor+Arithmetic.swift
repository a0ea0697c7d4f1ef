extension Tensor {
  /// Elementwise sum of two tensors of the same shape.
  public func adding(_ other: Tensor) -> Tensor {
    precondition(shape == other.shape, "add: shapes \(shape) and \(other.shape) differ")
    let result = Tensor(uninitializedShape: shape)
    let a = buffer.pointer, b = other.buffer.pointer, c = result.buffer.pointer
    Parallel.forRanges(count, minimumChunk: 1 << 16) { range in
      for i in range { c[i] = a[i] + b[i] }
    }
    return result
  }
}
