/// Reference-counted storage for a tensor's elements.
///
/// Memory comes from ``MemoryAllocator/shared`` and goes back to it when the
/// last tensor using the buffer is gone, so the allocator's live-byte count is
/// exactly the memory held by tensors.
public final class TensorBuffer: @unchecked Sendable {
  public let device: Device
  public let count: Int
  public let pointer: UnsafeMutablePointer<Float>

  /// Allocates uninitialized storage for `count` floats.
  public init(count: Int, device: Device = .cpu) {
    opPrecondition(count >= 0, "TensorBuffer: negative element count \(count)")
    self.device = device
    self.count = count
    let raw = MemoryAllocator.shared.allocate(byteCount: count * MemoryLayout<Float>.stride)
    self.pointer = raw.bindMemory(to: Float.self, capacity: Swift.max(count, 1))
  }

  public var byteCount: Int { count * MemoryLayout<Float>.stride }

  deinit {
    MemoryAllocator.shared.deallocate(UnsafeMutableRawPointer(pointer), byteCount: byteCount)
  }
}
