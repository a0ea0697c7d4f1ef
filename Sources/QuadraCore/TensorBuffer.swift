/// Reference-counted storage for a tensor's elements.
///
/// Memory comes from ``MemoryAllocator/shared`` and goes back to it when the last tensor using
/// the buffer is gone. Its bytes are counted by the ``MemoryTracker`` of the context current at
/// allocation, and the release is reported to that same tracker (whichever thread or context
/// drops the last reference), so each tracker's live-byte count is exactly the memory held by
/// the tensors allocated in its contexts.
public final class TensorBuffer: @unchecked Sendable {
  public let device: Device
  public let count: Int
  public let pointer: UnsafeMutablePointer<Float>
  /// The tracker charged for this buffer.
  public let memory: MemoryTracker

  /// Allocates uninitialized storage for `count` floats.
  public init(count: Int, device: Device = .cpu) {
    opPrecondition(count >= 0, "TensorBuffer: negative element count \(count)")
    self.device = device
    self.count = count
    self.memory = ComputeContext.current.memory
    let raw = MemoryAllocator.shared.allocate(byteCount: count * MemoryLayout<Float>.stride)
    self.pointer = raw.bindMemory(to: Float.self, capacity: Swift.max(count, 1))
    memory.recordAllocation(byteCount: byteCount)
  }

  public var byteCount: Int { count * MemoryLayout<Float>.stride }

  deinit {
    memory.recordRelease(byteCount: byteCount)
    MemoryAllocator.shared.deallocate(UnsafeMutableRawPointer(pointer), byteCount: byteCount)
  }
}
