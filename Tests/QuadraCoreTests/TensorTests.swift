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

  @Test func trackerCountsLivePeakAndAllocations() {
    let memory = MemoryTracker()
    memory.run {
      let t = Tensor(zeros: [256])
      #expect(memory.liveBytes == 1024)
      _ = t
    }
    #expect(memory.liveBytes == 0)
    #expect(memory.peakBytes == 1024)
    #expect(memory.allocationCount == 1)
    memory.resetPeak()
    #expect(memory.peakBytes == 0)
  }

  @Test func badReshapeTraps() async {
    await #expect(processExitsWith: .failure) {
      _ = Tensor(zeros: [2, 3]).reshaped([4, 2])
    }
  }
}
