import Testing

@testable import QuadraCore

/// The depthwise kernels' streaming-store path (forced on small shapes with
/// ``DepthwiseConvolution/streamingOverride``; on its own it only engages beyond the L3 share) and
/// the prefetch of the next image's first rows, against the reference.
@Suite struct DepthwiseStreamingTests {
  /// (N, H, W, C, k) with rows of whole 64-byte lines (W · C a multiple of 16, the only rows that
  /// stream): widths below 7 and not a multiple of 7, and several images whose rows of ≥ 2048 floats
  /// are copied ahead, so that the next image's first rows are prefetched, including images shorter
  /// than `p + 1` rows. The last four have channel counts that are not a multiple of 16: their rows
  /// stream through the staging row at either lane width (a partial last block at 16 lanes).
  static let cases: [(n: Int, h: Int, w: Int, c: Int, k: Int)] = [
    (2, 5, 3, 16, 7), (1, 9, 13, 32, 7), (2, 6, 10, 48, 7), (3, 9, 40, 64, 7), (3, 2, 64, 32, 7),
    (4, 4, 32, 64, 7), (2, 7, 9, 16, 3), (2, 5, 4, 40, 7), (3, 6, 2, 24, 3), (2, 9, 56, 72, 7), (2, 14, 14, 40, 3),
  ]

  @Test func casesPrefetchTheNextImage() {
    let minimum = DepthwiseConvolution.Kernels<SIMD16<Float>>.PaddedRowRing.minimumCopyAheadRow
    #expect(Self.cases.contains { $0.n > 1 && $0.w * $0.c >= minimum && $0.h > 7 })
    #expect(Self.cases.contains { $0.n > 1 && $0.w * $0.c >= minimum && $0.h <= $0.k / 2 })
  }

  @Test(arguments: [false, true], [(threads: 1, lanes: 8), (1, 16), (2, 8), (2, 16)])
  func matchesReference(streaming: Bool, run: (threads: Int, lanes: Int)) {
    let (threads, lanes) = run
    var rng = RandomGenerator(seed: 1300 + UInt64(threads))
    DepthwiseConvolution.$lanesOverride.withValue(lanes) {
      DepthwiseConvolution.$streamingOverride.withValue(streaming) {
        Parallel.withThreadCount(threads) {
          for (n, h, w, c, k) in Self.cases {
            let label = "N\(n) \(h)×\(w) C\(c) k\(k) streaming \(streaming) threads \(threads) lanes \(lanes)"
            let problem = DepthwiseLaneWidthTests.checkAgainstReference(n, h, w, c, k, label: label, using: &rng)
            let shape = DepthwiseConvolution.Shape(
              batch: n, height: h, width: w, channels: c, kernelSize: k, op: "test")
            #expect(
              DepthwiseConvolution.streamsOutput(problem.x.buffer.pointer, tensorsRead: 1, shape: shape) == streaming)
            // The input gradient alone is the forward kernel with the weight mirrored.
            let inputGradient = Tensor(uninitializedShape: problem.x.shape)
            DepthwiseConvolution.backwardInput(
              outputGradient: problem.dy.buffer.pointer, weight: problem.weight.buffer.pointer,
              inputGradient: inputGradient.buffer.pointer, batch: n, height: h, width: w, channels: c, kernelSize: k)
            expectClose(inputGradient, problem.dx, label + " dx alone")
          }
        }
      }
    }
  }

  /// The fused backward with forced row ranges, each thread's streaming stores fenced.
  @Test(arguments: [2, 3], [8, 16])
  func chunkedFusedBackwardStreams(chunks: Int, lanes: Int) {
    var rng = RandomGenerator(seed: 1350 + UInt64(chunks))
    DepthwiseConvolution.$lanesOverride.withValue(lanes) {
      DepthwiseConvolution.$streamingOverride.withValue(true) {
        for (n, h, w, c, k) in Self.cases where n * h >= chunks {
          DepthwiseBackwardTests.checkChunkedFusedBackward(
            n, h, w, c, k, chunks: chunks, label: "N\(n) \(h)×\(w) C\(c) k\(k) chunks \(chunks) lanes \(lanes)", using: &rng)
        }
      }
    }
  }

  /// Streaming needs rows of whole aligned 64-byte lines and tensors larger than the L3 share (the whole L3 for
  /// rows that stage); an override cannot force it where the lines are not whole. Rows of 8-lane or partial
  /// blocks stage.
  @Test func streamingDecision() {
    let buffer = Tensor(zeros: [64])
    let aligned = buffer.buffer.pointer
    func shape(batch: Int, width: Int = 56, channels: Int, lanes: Int) -> DepthwiseConvolution.Shape {
      DepthwiseConvolution.$lanesOverride.withValue(lanes) {
        DepthwiseConvolution.Shape(
          batch: batch, height: 56, width: width, channels: channels, kernelSize: 7, op: "test")
      }
    }
    let l3 = DepthwiseConvolution.streamingThreshold
    let imageBytes = 56 * 56 * 64 * 4
    // Input and output together just above and at most the L3 share.
    let above = shape(batch: l3 / (2 * imageBytes) + 1, channels: 64, lanes: 16)
    let below = shape(batch: Swift.max(1, l3 / (2 * imageBytes)), channels: 64, lanes: 16)
    #expect(DepthwiseConvolution.streamsOutput(aligned, tensorsRead: 1, shape: above))
    #expect(!DepthwiseConvolution.streamsOutput(aligned, tensorsRead: 1, shape: below) || 2 * imageBytes > l3)
    // The fused backward reads two tensors: a third of the L3 share per tensor is enough.
    let third = shape(batch: l3 / (3 * imageBytes) + 1, channels: 64, lanes: 16)
    #expect(DepthwiseConvolution.streamsOutput(aligned, tensorsRead: 2, shape: third))
    // Rows that stage (8-lane blocks) stream only past the whole reported L3.
    let stagedAbove = shape(batch: l3 / (2 * imageBytes) + 1, channels: 64, lanes: 8)
    #expect(
      DepthwiseConvolution.streamsOutput(aligned, tensorsRead: 1, shape: stagedAbove)
        == (2 * stagedAbove.batch * imageBytes > CPUInfo.current.level3CacheBytes))
    // Whole 16-lane blocks stream directly; 8-lane and partial blocks through the staging row.
    #expect(!above.stagesRows && above.stagingCount == 0)
    #expect(shape(batch: 1, channels: 64, lanes: 8).stagesRows)
    #expect(shape(batch: 1, channels: 72, lanes: 16).stagingCount == 56 * 72)
    DepthwiseConvolution.$streamingOverride.withValue(true) {
      #expect(DepthwiseConvolution.streamsOutput(aligned, tensorsRead: 1, shape: shape(batch: 64, channels: 64, lanes: 8)))
      #expect(DepthwiseConvolution.streamsOutput(aligned, tensorsRead: 1, shape: shape(batch: 64, channels: 72, lanes: 16)))
      #expect(DepthwiseConvolution.streamsOutput(aligned, tensorsRead: 1, shape: below))
      // Never with rows that end inside a line (7 · 40 = 280 floats) or an unaligned output, even when forced.
      #expect(!DepthwiseConvolution.streamsOutput(
        aligned, tensorsRead: 1, shape: shape(batch: 64, width: 7, channels: 40, lanes: 8)))
      #expect(!DepthwiseConvolution.streamsOutput(aligned + 4, tensorsRead: 1, shape: above))
    }
    withExtendedLifetime(buffer) {}
  }

  /// The L3 a call counts on is the reported one, capped at 4 MiB per processor (a VM reports its host socket's
  /// whole L3), and never below one processor's share.
  @Test func streamingThresholdIsAShareOfLevel3() {
    let mebibyte = 1 << 20
    // A 2-vCPU VM on a 300 MiB Xeon socket: 8 MiB; on a Zen 4 CCD's 32 MiB: 8 MiB too.
    #expect(DepthwiseConvolution.streamingThresholdBytes(level3CacheBytes: 300 * mebibyte, processors: 2) == 8 * mebibyte)
    #expect(DepthwiseConvolution.streamingThresholdBytes(level3CacheBytes: 32 * mebibyte, processors: 2) == 8 * mebibyte)
    // A whole 8-core CCD: its whole 32 MiB; a small L3 on many processors: the L3 itself.
    #expect(DepthwiseConvolution.streamingThresholdBytes(level3CacheBytes: 32 * mebibyte, processors: 8) == 32 * mebibyte)
    #expect(DepthwiseConvolution.streamingThresholdBytes(level3CacheBytes: 6 * mebibyte, processors: 4) == 6 * mebibyte)
    // A processor count of 0 (unreadable) counts as one.
    #expect(DepthwiseConvolution.streamingThresholdBytes(level3CacheBytes: 300 * mebibyte, processors: 0) == 4 * mebibyte)
    #expect(DepthwiseConvolution.streamingThreshold <= CPUInfo.current.level3CacheBytes)
  }
}
