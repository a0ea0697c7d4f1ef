import Foundation
import Synchronization
import Testing

@testable import QuadraCore

// Multi-core behaviour: reductions give the same bits on any thread count (their chunks are fixed
// by the shape), the persistent worker pool stays correct when loops nest or run concurrently
// (Swift Testing runs these tests in parallel in one process), and deep, narrow products split
// along their depth agree with the reference backend.

/// Every reduction output of a small training-like workload, computed on `threads` threads.
private func reductionOutputs(threads: Int) throws -> [[Float]] {
  let context = try ComputeContext.current.with(threads: threads).with(memory: MemoryTracker())
  return context.run {
    var generator = RandomGenerator(seed: 7)
    // 64 images of 14×14 with 40 channels, as the first stage of quadranet-28 at batch 64.
    let x = Tensor.normal(shape: [64, 14, 14, 40], using: &generator)
    let g = Tensor.normal(shape: [64, 14, 14, 40], using: &generator)
    let weight = Tensor.normal(shape: [40], using: &generator)
    let bias = Tensor.normal(shape: [40], using: &generator)
    let (_, statistics) = x.layerNorm(weight: weight, bias: bias)
    let layerNorm = x.layerNormBackward(outputGradient: g, weight: weight, statistics: statistics)
    let gelu = x.biasGELUBackward(bias: bias, outputGradient: g)
    let columnSums = g.sum(toShape: [40])
    let imageSums = g.sum(toShape: [1, 14, 14, 40])
    let products = Tensor.sumOfProducts(x, g, toShape: [40])
    // A weight gradient Xᵀ·G with depth 12544: split along the depth.
    let rows = x.reshaped([-1, 40]), gradients = g.reshaped([-1, 40])
    let weightGradient = rows.matmul(gradients, transposeSelf: true)
    let totals: [Float] = [Float(g.sum().scalars[0]), Float(g.squaredSum())]
    // Depthwise weight gradients sum per-chunk partials: the 3×3 quadratic mixer (fused backward), a 7×7
    // depthwise convolution with and without the input gradient (fused and weight-only kernels).
    let kernels = (0..<3).map { _ in Tensor.normal(shape: [3, 3, 40], using: &generator) }
    let biases = (0..<3).map { _ in Tensor.normal(shape: [40], using: &generator) }
    let quadratic = Tensor.quadraticDepthwiseConv2DBackward(
      input: x, weights: (kernels[0], kernels[1], kernels[2]), biases: (biases[0], biases[1], biases[2]),
      outputGradient: g)
    let depthwiseWeight = Tensor.normal(shape: [7, 7, 40], using: &generator)
    let depthwise = Tensor.depthwiseConv2DBackward(
      input: x, weight: depthwiseWeight, outputGradient: g, needsInputGradient: true, hasBias: true)
    let depthwiseWeightOnly = Tensor.depthwiseConv2DBackward(
      input: x, weight: depthwiseWeight, outputGradient: g, needsInputGradient: false, hasBias: true)
    return [
      layerNorm.input.scalars, layerNorm.weight.scalars, layerNorm.bias.scalars, gelu.input.scalars,
      gelu.bias.scalars, columnSums.scalars, imageSums.scalars, products.scalars, weightGradient.scalars, totals,
      quadratic.weights.0.scalars, quadratic.weights.1.scalars, quadratic.weights.2.scalars,
      quadratic.biases!.0.scalars, quadratic.biases!.2.scalars, depthwise.weight.scalars, depthwise.bias!.scalars,
      depthwiseWeightOnly.weight.scalars,
    ]
  }
}

/// `values[i] = i·round + threads` by a parallel loop in `context`, each chunk reading the
/// thread count from its own task-local context (which must be the caller's).
private func writeRound(_ round: Int, into values: UnsafeMutableBufferPointer<Int>, in context: ComputeContext) {
  context.run {
    Parallel.forRanges(values.count, minimumChunk: 256) { range in
      let threads = ComputeContext.current.threadCount
      for i in range { values[i] = i &* round &+ threads }
    }
  }
}

@Suite struct ParallelScalingTests {
  @Test func reductionsGiveTheSameBitsOnEveryThreadCount() throws {
    let single = try reductionOutputs(threads: 1)
    for threads in [2, 3, 4, 7] {
      let multi = try reductionOutputs(threads: threads)
      for (index, (a, b)) in zip(single, multi).enumerated() {
        #expect(a == b, "output \(index) differs between 1 and \(threads) threads")
      }
    }
  }

  @Test func depthSplitProductsMatchTheReference() throws {
    var generator = RandomGenerator(seed: 3)
    let cases: [(m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool)] = [
      (24, 40, 4100, true, false), (33, 17, 2500, false, false), (8, 48, 3001, false, true), (40, 80, 12544, true, true),
    ]
    for c in cases {
      let product = MatrixProduct(m: c.m, n: c.n, k: c.k, transposeA: c.transposeA, transposeB: c.transposeB)
      #expect(CPUBackend.depthSlices(product) != nil, "\(c) should be split along k")
      let a = Tensor.normal(shape: c.transposeA ? [c.k, c.m] : [c.m, c.k], using: &generator)
      let b = Tensor.normal(shape: c.transposeB ? [c.n, c.k] : [c.k, c.n], using: &generator)
      let bias = Tensor.normal(shape: [c.n], using: &generator)
      func compute(_ backend: any Backend, threads: Int) throws -> Tensor {
        let output = Tensor(zeros: [c.m, c.n])
        try ComputeContext.current.with(threads: threads).with(backend: backend).run {
          backend.matrixMultiply(a, b, product, columnBias: bias, into: output)
        }
        return output
      }
      let reference = try compute(ReferenceBackend(), threads: 1)
      for threads in [1, 2, 5] {
        let error = maxScaledError(try compute(CPUBackend(), threads: threads), reference)
        // Sums of k ≈ 10⁴ products of unit normals: relative rounding ≈ 10⁻⁵ of √k.
        #expect(error < 2e-4, "\(c) on \(threads) threads: error \(error)")
      }
    }
  }

  @Test func nestedLoopsVisitEveryIndexOnce() throws {
    let outer = 24, inner = 5000
    let counts = UnsafeMutableBufferPointer<Int32>.allocate(capacity: outer * inner)
    defer { counts.deallocate() }
    counts.initialize(repeating: 0)
    nonisolated(unsafe) let storage = counts
    try ComputeContext.current.with(threads: 4).run {
      Parallel.forEach(outer) { i in
        // The pool is busy with the outer loop: the inner one must still run, on other threads.
        Parallel.forRanges(inner, minimumChunk: 100) { range in
          for j in range { storage[i * inner + j] += 1 }
        }
      }
    }
    #expect(counts.allSatisfy { $0 == 1 })
  }

  @Test func concurrentContextsShareThePoolCorrectly() async throws {
    let taskCount = 8, rounds = 200, count = 4096
    let failures = try await withThrowingTaskGroup(of: Int.self) { group in
      for task in 0..<taskCount {
        let context = try ComputeContext.current.with(threads: 2 + task % 3)
        group.addTask {
          let values = UnsafeMutableBufferPointer<Int>.allocate(capacity: count)
          defer { values.deallocate() }
          nonisolated(unsafe) let storage = values
          var failures = 0
          for round in 0..<rounds {
            writeRound(round, into: storage, in: context)
            let expectedThreads = context.threadCount
            if !(0..<count).allSatisfy({ values[$0] == $0 &* round &+ expectedThreads }) {
              failures += 1
            }
          }
          return failures
        }
      }
      return try await group.reduce(0, +)
    }
    #expect(failures == 0)
  }

  @Test func aLoopOfManyTinyChunksCompletes() throws {
    // More chunks than workers, each tiny: the caller and the workers share them dynamically.
    let sums = Atomic<Int>(0)
    try ComputeContext.current.with(threads: 64).run {
      for _ in 0..<100 {
        Parallel.forEach(64) { i in sums.add(i, ordering: .relaxed) }
      }
    }
    #expect(sums.load(ordering: .relaxed) == 100 * (63 * 64 / 2))
  }

  /// A pool of three workers (four threads with the caller) runs thousands of loops, mostly back to back,
  /// with fewer, as many and more chunks than threads: each chunk of each loop runs exactly once (own
  /// chunks, the counter's and taken-over own chunks never overlap, and no late worker runs a chunk of
  /// an older loop in a newer one), and every loop has returned only after all its chunks ran.
  @Test func ownChunksClaimedChunksAndTakeoversRunEachChunkOnce() throws {
    let pool = WorkerPool(workerCount: 3)
    let loops = 3000, mostChunks = 9
    let runs = UnsafeMutableBufferPointer<Atomic<Int>>.allocate(capacity: loops * mostChunks)
    defer { runs.deallocate() }
    for index in runs.indices { (runs.baseAddress! + index).initialize(to: Atomic(0)) }
    nonisolated(unsafe) let counts = runs
    var incomplete = 0
    for loop in 0..<loops {
      // Now and then a pause long enough for the workers to park, so that loops also start with parked
      // owners (taken over by the caller or by a woken worker without an own chunk).
      if loop % 100 == 0 { usleep(2000) }
      let chunks = 2 + loop % (mostChunks - 1)
      // Uneven chunks (chunk 0 the longest) so that threads finish at different times and take over.
      #expect(pool.run(chunks: chunks) { chunk in
        let end = DispatchTime.now().uptimeNanoseconds + UInt64((chunks - chunk) * 500)
        while DispatchTime.now().uptimeNanoseconds < end {}
        counts[loop * mostChunks + chunk].add(1, ordering: .relaxed)
      })
      incomplete += (0..<chunks).filter { counts[loop * mostChunks + $0].load(ordering: .relaxed) != 1 }.count
    }
    #expect(incomplete == 0)
    let total = (0..<runs.count).reduce(0) { $0 + runs[$1].load(ordering: .relaxed) }
    #expect(total == (0..<loops).reduce(0) { $0 + 2 + $1 % (mostChunks - 1) })
  }
}

@Suite struct ProfilingBackendTests {
  @Test func callCountsMatchAKnownGraph() throws {
    let profiler = ProfilingBackend(wrapping: CPUBackend())
    var generator = RandomGenerator(seed: 5)
    let a = Tensor.normal(shape: [32, 16], using: &generator)
    let b = Tensor.normal(shape: [16, 8], using: &generator)
    let context = ComputeContext.current.with(backend: profiler).with(memory: MemoryTracker())
    let result = context.run {
      profiler.recording(.forward) {
        let product = a.matmul(b)  // 1 matrixMultiply
        let doubled = product + product  // 1 binary.add
        return (doubled * doubled).gelu()  // 1 binary.multiply, 1 gelu
      }
    }
    let expected = a.matmul(b)
    #expect(maxScaledError(result, ((expected + expected) * (expected + expected)).gelu()) == 0)
    let rows = profiler.entries
    func calls(_ primitive: String) -> Int {
      rows.first { $0.phase == .forward && $0.primitive == primitive }?.calls ?? 0
    }
    #expect(calls("matrixMultiply") == 1)
    #expect(calls("binary.add") == 1)
    #expect(calls("binary.multiply") == 1)
    #expect(calls("gelu") == 1)
    #expect(calls("makeBuffer") == 4)
    #expect(rows.allSatisfy { $0.phase == .forward })
    let product = try #require(rows.first { $0.primitive == "matrixMultiply" })
    #expect(product.floatingPointOperations == 2 * 32 * 16 * 8)
    #expect(product.bytes == 4 * Double(32 * 16 + 16 * 8 + 32 * 8))
    profiler.reset()
    #expect(profiler.entries.isEmpty)
  }

  @Test func phasesNestAndTimesFitInTheirPhase() throws {
    let profiler = ProfilingBackend(wrapping: CPUBackend())
    let x = Tensor(shape: [256, 256], repeating: 1)
    let context = ComputeContext.current.with(backend: profiler).with(memory: MemoryTracker())
    var outerSeconds = 0.0
    context.run {
      let start = DispatchTime.now().uptimeNanoseconds
      profiler.recording(.backward) {
        _ = x + x
        profiler.recording(.optimizer) { _ = x * x }
        _ = x + x
      }
      outerSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
      _ = x + x  // outside any phase: `.other`
    }
    let rows = profiler.entries
    #expect(rows.first { $0.phase == .backward && $0.primitive == "binary.add" }?.calls == 2)
    #expect(rows.first { $0.phase == .optimizer && $0.primitive == "binary.multiply" }?.calls == 1)
    #expect(rows.first { $0.phase == .other && $0.primitive == "binary.add" }?.calls == 1)
    let timedInPhases = rows.filter { $0.phase != .other }.reduce(0) { $0 + $1.seconds }
    #expect(timedInPhases > 0 && timedInPhases <= outerSeconds)
    // Rows are ordered by phase: backward before optimizer before other.
    #expect(rows.map(\.phase) == rows.map(\.phase).sorted())
  }
}
