/// Temporary float storage for kernels (packed weights, im2col columns, per-thread partial sums).
///
/// The memory comes from the tracking allocator like any tensor, so it shows in the memory
/// numbers. It is handed out only inside a closure and kept alive until the closure returns:
/// a scratch tensor whose raw pointer is used after the tensor's last Swift use may be freed
/// (and reused) while a kernel still writes through the pointer, because Swift ends an object's
/// lifetime at its last use, not at the end of its scope.
enum KernelScratch {
  /// Calls `body` with `count` uninitialized floats (zeros when `zeroed`), valid until it returns.
  @inline(__always)
  static func with<R>(
    count: Int, zeroed: Bool = false, _ body: (UnsafeMutablePointer<Float>) throws -> R
  ) rethrows -> R {
    let storage = TensorBuffer(count: count)
    if zeroed { storage.pointer.initialize(repeating: 0, count: count) }
    return try withExtendedLifetime(storage) { try body(storage.pointer) }
  }
}
