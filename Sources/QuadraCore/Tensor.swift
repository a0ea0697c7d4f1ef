/// An N-dimensional array of `Float` in contiguous row-major storage.
///
/// Images are channels-last (`[N, H, W, C]`): depthwise convolutions then
/// vectorize over channels, 1×1 convolutions and MLPs are plain GEMMs over the
/// `N·H·W` rows, and LayerNorm normalizes contiguous rows. Layouts are converted
/// only at I/O boundaries (PyTorch checkpoints are NCHW).
///
/// `Tensor` has value semantics: reshaping shares storage, and mutation through
/// ``withUnsafeMutableBufferPointer(_:)`` copies first if the storage is shared.
public struct Tensor: @unchecked Sendable {
  public private(set) var shape: [Int]
  public private(set) var buffer: TensorBuffer

  /// Creates a tensor whose elements are left uninitialized; kernels that overwrite every element use it.
  public init(uninitializedShape shape: [Int], device: Device = .cpu) {
    Tensor.validate(shape: shape, op: "Tensor")
    self.shape = shape
    self.buffer = TensorBuffer(count: shape.reduce(1, *), device: device)
  }

  /// Creates a tensor filled with `value`.
  public init(shape: [Int], repeating value: Float) {
    self.init(uninitializedShape: shape)
    buffer.pointer.initialize(repeating: value, count: buffer.count)
  }

  /// Creates a tensor of zeros.
  public init(zeros shape: [Int]) { self.init(shape: shape, repeating: 0) }

  /// Creates a tensor from row-major `scalars`; their count must match the shape.
  public init(shape: [Int], scalars: [Float]) {
    let expected = shape.reduce(1, *)
    opPrecondition(
      scalars.count == expected,
      "Tensor(shape: \(shape), scalars:): \(scalars.count) scalars given, shape needs \(expected)")
    self.init(uninitializedShape: shape)
    scalars.withUnsafeBufferPointer { source in
      buffer.pointer.update(from: source.baseAddress!, count: expected)
    }
  }

  /// A scalar tensor (rank 0).
  public init(_ scalar: Float) { self.init(shape: [], scalars: [scalar]) }

  /// Shares `buffer` under a new shape with the same element count.
  init(shape: [Int], buffer: TensorBuffer) {
    self.shape = shape
    self.buffer = buffer
  }

  static func validate(shape: [Int], op: String) {
    opPrecondition(shape.allSatisfy { $0 >= 0 }, "\(op): negative dimension in shape \(shape)")
  }

  public var rank: Int { shape.count }
  public var count: Int { buffer.count }
  public var device: Device { buffer.device }

  /// All elements in row-major order.
  public var scalars: [Float] { Array(UnsafeBufferPointer(start: buffer.pointer, count: count)) }

  /// The single element of a one-element tensor.
  public var scalar: Float {
    opPrecondition(count == 1, "Tensor.scalar: tensor of shape \(shape) has \(count) elements, expected 1")
    return buffer.pointer[0]
  }

  /// The same elements viewed under another shape (storage is shared). One dimension may be -1.
  public func reshaped(_ newShape: [Int]) -> Tensor {
    var resolved = newShape
    let inferred = newShape.indices.filter { newShape[$0] == -1 }
    opPrecondition(inferred.count <= 1, "reshape: more than one -1 in \(newShape)")
    if let index = inferred.first {
      let known = newShape.enumerated().filter { $0.offset != index }.map(\.element).reduce(1, *)
      opPrecondition(
        known > 0 && count % known == 0, "reshape: cannot reshape \(shape) (\(count) elements) to \(newShape)")
      resolved[index] = count / known
    }
    opPrecondition(
      resolved.allSatisfy { $0 >= 0 } && resolved.reduce(1, *) == count,
      "reshape: cannot reshape \(shape) (\(count) elements) to \(newShape)")
    return Tensor(shape: resolved, buffer: buffer)
  }

  /// Reads the elements through a pointer (no copy).
  public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
    try body(UnsafeBufferPointer(start: buffer.pointer, count: count))
  }

  /// Writes the elements through a pointer, copying the storage first if another tensor shares it.
  public mutating func withUnsafeMutableBufferPointer<R>(
    _ body: (UnsafeMutableBufferPointer<Float>) throws -> R
  ) rethrows -> R {
    if !isKnownUniquelyReferenced(&buffer) {
      let copy = TensorBuffer(count: count, device: device)
      copy.pointer.update(from: buffer.pointer, count: count)
      buffer = copy
    }
    return try body(UnsafeMutableBufferPointer(start: buffer.pointer, count: count))
  }

  /// A deep copy with its own storage.
  public func copy() -> Tensor {
    let result = Tensor(uninitializedShape: shape)
    result.buffer.pointer.update(from: buffer.pointer, count: count)
    return result
  }

  /// The element at a multi-dimensional index (slow; for tests and small lookups).
  public subscript(index: Int...) -> Float {
    get { buffer.pointer[flatIndex(index)] }
    set {
      let flat = flatIndex(index)
      withUnsafeMutableBufferPointer { $0[flat] = newValue }
    }
  }

  private func flatIndex(_ index: [Int]) -> Int {
    opPrecondition(index.count == rank, "Tensor subscript: \(index.count) indices for shape \(shape)")
    var flat = 0
    for (i, dim) in shape.enumerated() {
      opPrecondition(index[i] >= 0 && index[i] < dim, "Tensor subscript: index \(index) out of range for shape \(shape)")
      flat = flat * dim + index[i]
    }
    return flat
  }
}

extension Tensor: CustomStringConvertible {
  public var description: String {
    let preview = scalars.prefix(8).map { String($0) }.joined(separator: ", ")
    return "Tensor(shape: \(shape), [\(preview)\(count > 8 ? ", …" : "")])"
  }
}
