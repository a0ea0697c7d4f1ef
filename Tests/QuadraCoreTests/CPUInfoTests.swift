import Foundation
import Testing

@testable import QuadraCore

@Suite struct CPUInfoTests {
  @Test func parsesSysfsCacheSizes() {
    #expect(CPUInfo.cacheBytes("32K\n") == 32 << 10)
    #expect(CPUInfo.cacheBytes("1024K") == 1 << 20)
    #expect(CPUInfo.cacheBytes("32M") == 32 << 20)
    #expect(CPUInfo.cacheBytes("65536") == 65536)
    for bad in ["", "K", "-4K", "12X", "100", "99999999999999999999K", "2000G"] {
      #expect(CPUInfo.cacheBytes(bad) == nil, "\(bad)")
    }
  }

  @Test func readsTheVectorISAFromTheFlags() {
    let avx512 = "processor\t: 0\nflags\t\t: fpu sse2 avx fma avx2 avx512f avx512bw\nbogomips\t: 1\n"
    #expect(CPUInfo.vectorISA(cpuinfo: avx512) == .avx512)
    #expect(CPUInfo.vectorISA(cpuinfo: "flags\t: sse2 avx fma avx2\n") == .avx2)
    // AVX2 without FMA (or flags names that merely contain it) is not enough for the kernels.
    #expect(CPUInfo.vectorISA(cpuinfo: "flags\t: sse2 avx avx2\n") == .baseline)
    #expect(CPUInfo.vectorISA(cpuinfo: "flags\t: sse2 fma4 avx2x\n") == .baseline)
    #expect(CPUInfo.vectorISA(cpuinfo: "no flags here") == .baseline)
    #expect(CPUInfo.VectorISA.avx512 > .avx2 && CPUInfo.VectorISA.avx2.floatLanes == 8)
  }

  /// Full-width 512-bit FMAs by vendor and family: every Intel AVX-512 core, AMD from family 26 (Zen 5), not
  /// Zen 4 (family 25) nor an unknown vendor; a field name must match whole (`cpu family`, not `cpu family2`).
  @Test func readsFullWidthVectorsFromVendorAndFamily() {
    func text(_ vendor: String, _ family: String) -> String {
      "processor\t: 0\nvendor_id\t: \(vendor)\ncpu family\t: \(family)\nmodel\t\t: 17\nflags\t\t: avx2 fma avx512f\n"
        + "processor\t: 1\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n"
    }
    #expect(CPUInfo.fullWidthVectors(cpuinfo: text("GenuineIntel", "6")))
    #expect(CPUInfo.fullWidthVectors(cpuinfo: text("AuthenticAMD", "26")))
    #expect(!CPUInfo.fullWidthVectors(cpuinfo: text("AuthenticAMD", "25")))
    #expect(!CPUInfo.fullWidthVectors(cpuinfo: text("AuthenticAMD", "x")))
    #expect(!CPUInfo.fullWidthVectors(cpuinfo: text("HygonGenuine", "24")))
    #expect(!CPUInfo.fullWidthVectors(cpuinfo: "vendor_id\t: AuthenticAMD\ncpu family2\t: 26\n"))
    #expect(!CPUInfo.fullWidthVectors(cpuinfo: "no fields here"))
    #expect(!CPUInfo.fullWidthVectors(cpuinfo: ""))
    // `quadranet info` shows it next to the processor's ISA, before what a narrower build's kernels use.
    let info = CPUInfo(
      vectorISA: .avx512, level1DataCacheBytes: 48 << 10, level2CacheBytes: 2 << 20, level3CacheBytes: 32 << 20,
      fullWidth512: true)
    #expect(info.description.hasPrefix("avx512 (full-width 512-bit FMA)"))
    var zen4 = info
    zen4.fullWidth512 = false
    #expect(zen4.description.hasPrefix("avx512 (512-bit FMA in two halves)"))
    var avx2 = info
    avx2.vectorISA = .avx2
    #expect(!avx2.description.contains("512-bit"))
  }

  /// The kernels use the processor's ISA but never more than the build's: a native build targets this
  /// processor (the Clang importer's feature macros must agree with `/proc/cpuinfo`), the portable build
  /// the baseline, and a `QUADRANET_TARGET_CPU` build whatever it named (checked only to be no wider).
  @Test func kernelsUseTheNarrowerOfProcessorAndBuild() {
    let build = CPUInfo.buildVectorISA
    for isa in [CPUInfo.VectorISA.baseline, .avx2, .avx512] {
      let info = CPUInfo(vectorISA: isa, level1DataCacheBytes: 1 << 15, level2CacheBytes: 1 << 20, level3CacheBytes: 1 << 25)
      #expect(info.kernelVectorISA == Swift.min(isa, build))
    }
    #if QUADRANET_PORTABLE
      #expect(build == .baseline)
    #elseif arch(x86_64) && !QUADRANET_TARGET_CPU
      #expect(build == CPUInfo.current.vectorISA)
    #endif
    #expect(CPUInfo.current.kernelVectorISA <= build)
  }

  /// A fake `/proc` + `/sys` tree: the sizes and ISA come from it; what it lacks falls back.
  @Test func detectsFromAFileTreeAndFallsBack() throws {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("cpuinfo-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: root) }
    let cache = root.appendingPathComponent("sys/devices/system/cpu/cpu0/cache")
    func write(_ text: String, _ path: String) throws {
      let url = cache.appendingPathComponent(path)
      try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
      try text.write(to: url, atomically: true, encoding: .utf8)
    }
    try write("1\n", "index0/level")
    try write("Data\n", "index0/type")
    try write("48K\n", "index0/size")
    try write("1\n", "index1/level")
    try write("Instruction\n", "index1/type")
    try write("64K\n", "index1/size")
    try write("2\n", "index2/level")
    try write("Unified\n", "index2/type")
    try write("2048K\n", "index2/size")
    try FileManager.default.createDirectory(
      at: root.appendingPathComponent("proc"), withIntermediateDirectories: true)
    try "vendor_id\t: GenuineIntel\nflags\t: sse2 avx2 fma\n".write(
      to: root.appendingPathComponent("proc/cpuinfo"), atomically: true, encoding: .utf8)

    let info = CPUInfo.detect(root: root.path + "/")
    #expect(info.vectorISA == .avx2)
    // An Intel core without AVX-512 has no 512-bit FMAs at all.
    #expect(!info.fullWidth512)
    #expect(info.level1DataCacheBytes == 48 << 10)
    #expect(info.level2CacheBytes == 2 << 20)
    // No L3 listed: the L2 size stands in.
    #expect(info.level3CacheBytes == 2 << 20)

    let missing = CPUInfo.detect(root: root.path + "/nothing/")
    #expect(missing == CPUInfo.fallback)
  }

  @Test func thisMachineIsPlausible() {
    let info = CPUInfo.current
    #expect((1 << 10...1 << 30).contains(info.level1DataCacheBytes))
    #expect(info.level2CacheBytes >= info.level1DataCacheBytes)
    #expect(info.level3CacheBytes >= info.level2CacheBytes || info.level3CacheBytes == CPUInfo.fallback.level3CacheBytes)
    #expect(!info.description.isEmpty)
  }
}
