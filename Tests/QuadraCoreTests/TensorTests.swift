import Testing

@testable import QuadraCore

@Suite struct TensorTests {
  @Test func reshapeSharesStorageAndInfersDimension() {
    let t = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
    let r = t.reshaped([3, -1])
    #expect(r.shape == [3, 2])
    #expect(r.buffer === t.buffer)
    #expect(r.scalars == [1, 2, 3, 4, 5, 6])
  }

  @Test func mutationCopiesSharedStorage() {
    let a = Tensor(shape: [2], scalars: [1, 2])
    var b = a
    b[1] = 5
    #expect(a.scalars == [1, 2])
    #expect(b.scalars == [1, 5])
  }

  @Test func allocatorTracksLiveAndPeakBytes() {
    let allocator = MemoryAllocator.shared
    let before = allocator.liveBytes
    allocator.resetPeak()
    do {
      let t = Tensor(zeros: [256])
      #expect(allocator.liveBytes == before + 1024)
      _ = t
    }
    #expect(allocator.liveBytes == before)
    #expect(allocator.peakBytes >= before + 1024)
  }

  @Test func badReshapeTraps() async {
    await #expect(processExitsWith: .failure) {
      _ = Tensor(zeros: [2, 3]).reshaped([4, 2])
    }
  }
}
