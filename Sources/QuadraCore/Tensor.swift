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
    self.buffer = Backends.backend(for: device).makeBuffer(count: shape.reduce(1, *))
  }

  /// Creates a tensor filled with `value`.
  public init(shape: [Int], repeating value: Float, device: Device = .cpu) {
    self.init(uninitializedShape: shape, device: device)
    backend.fill(self, with: value)
  }

  /// Creates a tensor of zeros.
  public init(zeros shape: [Int], device: Device = .cpu) { self.init(shape: shape, repeating: 0, device: device) }

  /// Creates a tensor from row-major `scalars` (host memory); their count must match the shape.
  public init(shape: [Int], scalars: [Float], device: Device = .cpu) {
    let expected = shape.reduce(1, *)
    opPrecondition(
      scalars.count == expected,
      "Tensor(shape: \(shape), scalars:): \(scalars.count) scalars given, shape needs \(expected)")
    self.init(uninitializedShape: shape, device: device)
    scalars.withUnsafeBufferPointer { backend.copy(fromHost: $0, into: self, at: 0) }
  }

  /// A scalar tensor (rank 0).
  public init(_ scalar: Float, device: Device = .cpu) { self.init(shape: [], scalars: [scalar], device: device) }

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

  /// The backend that serves this tensor's device (``Backends/current`` when it lives there).
  var backend: any Backend { Backends.backend(for: device) }

  /// All elements in row-major order, copied to host memory.
  public var scalars: [Float] {
    [Float](unsafeUninitializedCapacity: count) { out, initialized in
      backend.copy(self, from: 0, toHost: out)
      initialized = count
    }
  }

  /// The single element of a one-element tensor.
  public var scalar: Float {
    opPrecondition(count == 1, "Tensor.scalar: tensor of shape \(shape) has \(count) elements, expected 1")
    return element(at: 0)
  }

  /// The same elements on `device` (`self` when it is already there), through host memory.
  public func moved(to device: Device) -> Tensor {
    if device == self.device { return self }
    return Tensor(shape: shape, scalars: scalars, device: device)
  }

  private func element(at flat: Int) -> Float {
    var value: Float = 0
    withUnsafeMutablePointer(to: &value) { backend.copy(self, from: flat, toHost: UnsafeMutableBufferPointer(start: $0, count: 1)) }
    return value
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

  /// Reads the elements through a host pointer: the escape hatch for code outside the backends.
  ///
  /// On the CPU this is the storage itself (no copy); on another device it is a host copy.
  /// Ops never use it: they call ``Backends`` primitives.
  public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
    if device.kind == .cpu {
      return try withExtendedLifetime(buffer) { try body(UnsafeBufferPointer(start: buffer.pointer, count: count)) }
    }
    return try scalars.withUnsafeBufferPointer(body)
  }

  /// Writes the elements through a host pointer, copying the storage first if another tensor shares it.
  ///
  /// On the CPU the pointer addresses the storage itself; on another device it addresses a host
  /// copy that is written back when `body` returns.
  public mutating func withUnsafeMutableBufferPointer<R>(
    _ body: (UnsafeMutableBufferPointer<Float>) throws -> R
  ) rethrows -> R {
    makeStorageUnique()
    if device.kind == .cpu {
      return try withExtendedLifetime(buffer) {
        try body(UnsafeMutableBufferPointer(start: buffer.pointer, count: count))
      }
    }
    var host = scalars
    defer { host.withUnsafeBufferPointer { backend.copy(fromHost: $0, into: self, at: 0) } }
    return try host.withUnsafeMutableBufferPointer { try body($0) }
  }

  /// Gives `self` its own storage if another tensor shares it (copy on write).
  mutating func makeStorageUnique() {
    if !isKnownUniquelyReferenced(&buffer) { buffer = copy().buffer }
  }

  /// A deep copy with its own storage (on the same device).
  public func copy() -> Tensor {
    let result = Tensor(uninitializedShape: shape, device: device)
    let whole = StridedBlock(offset: 0, rowStride: count)
    backend.copyBlock(from: self, whole, into: result, whole, rows: 1, width: count)
    return result
  }

  /// The element at a multi-dimensional index (slow; for tests and small lookups).
  public subscript(index: Int...) -> Float {
    get { element(at: flatIndex(index)) }
    set {
      let flat = flatIndex(index)
      makeStorageUnique()
      let value = [newValue]
      value.withUnsafeBufferPointer { backend.copy(fromHost: $0, into: self, at: flat) }
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
