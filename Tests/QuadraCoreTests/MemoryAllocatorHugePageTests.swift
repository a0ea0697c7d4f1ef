import Foundation
import Testing

@testable import QuadraCore

/// Large allocator blocks are aligned to the transparent huge page size and marked for huge pages;
/// the size is read from sysfs and refused when huge pages are off or the size is implausible.
@Suite struct MemoryAllocatorHugePageTests {
  /// Writes a fake `sys/kernel/mm/transparent_hugepage` tree (nil contents leave a file out) and
  /// returns the size read from it.
  static func hugePageBytes(enabled: String?, size: String?) throws -> Int? {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("thp-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: root) }
    let directory = root.appendingPathComponent("sys/kernel/mm/transparent_hugepage")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    if let enabled { try enabled.write(to: directory.appendingPathComponent("enabled"), atomically: true, encoding: .utf8) }
    if let size { try size.write(to: directory.appendingPathComponent("hpage_pmd_size"), atomically: true, encoding: .utf8) }
    return MemoryAllocator.transparentHugePageBytes(root: root.path + "/")
  }

  @Test func hugePageSizeFromSysfs() throws {
    #expect(try Self.hugePageBytes(enabled: "always [madvise] never\n", size: "2097152\n") == 2 << 20)
    #expect(try Self.hugePageBytes(enabled: "[always] madvise never\n", size: "65536\n") == 1 << 16)
    #expect(try Self.hugePageBytes(enabled: "always madvise [never]\n", size: "2097152\n") == nil)
    #expect(try Self.hugePageBytes(enabled: nil, size: "2097152\n") == nil)
    #expect(try Self.hugePageBytes(enabled: "[madvise]\n", size: nil) == nil)
    // Not a power of two, too small, too large (512 MiB pages of 64 KiB-page kernels), not a number.
    for size in ["3000000", "4096", "536870912", "2M", "", "-2097152"] {
      #expect(try Self.hugePageBytes(enabled: "[madvise]", size: size) == nil, "size \(size)")
    }
  }

  /// Blocks of at least one huge page start on a huge page boundary and are usable end to end;
  /// smaller blocks keep the vector alignment.
  @Test func largeBlocksAreHugePageAligned() {
    let allocator = MemoryAllocator()
    allocator.cacheLimitBytes = 0
    let small = allocator.allocate(byteCount: 1000)
    #expect(Int(bitPattern: small) % MemoryAllocator.alignment == 0)
    allocator.deallocate(small, byteCount: 1000)
    guard let hugePage = MemoryAllocator.transparentHugePageBytes else { return }
    let count = hugePage + 12_345
    let block = allocator.allocate(byteCount: count)
    #expect(Int(bitPattern: block) % hugePage == 0)
    block.storeBytes(of: 1, as: UInt8.self)
    block.storeBytes(of: 2, toByteOffset: count - 1, as: UInt8.self)
    #expect(block.load(as: UInt8.self) == 1 && block.load(fromByteOffset: count - 1, as: UInt8.self) == 2)
    allocator.deallocate(block, byteCount: count)
  }
}
