// Compiled only with the MPI trait, so that building every target (`swift build`, `swift test`)
// without it never needs mpi.h.
#if MPI
import CMPI
import Foundation
import QuadraDistributed

/// A ``Communicator`` over Open MPI's `MPI_COMM_WORLD` (built only with the `MPI` trait:
/// `swift build -c release --traits MPI`, which needs `apt-get install openmpi-bin libopenmpi-dev`).
///
/// Create one per process, after `mpirun` started it; ``finalize()`` before exiting normally.
/// Errors in MPI calls are fatal for the job (Open MPI's default handler), so a broken peer
/// ends every rank instead of leaving them waiting.
public final class MPICommunicator: Communicator {
  public let rank: Int
  public let size: Int
  private var finalized = false

  /// Initializes MPI (`MPI_Init_thread`, serialized calls) and reads rank and size of `MPI_COMM_WORLD`.
  public init() throws {
    var provided: Int32 = 0
    var argc: Int32 = 0
    let status = MPI_Init_thread(&argc, nil, cmpi_thread_serialized(), &provided)
    guard status == cmpi_success() else { throw CommunicatorError.library("MPI_Init_thread failed with code \(status)") }
    var rank: Int32 = 0
    var size: Int32 = 0
    MPI_Comm_rank(cmpi_comm_world(), &rank)
    MPI_Comm_size(cmpi_comm_world(), &size)
    self.rank = Int(rank)
    self.size = Int(size)
  }

  public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
    // MPI counts are Int32: large buffers go in chunks.
    var offset = 0
    while offset < buffer.count {
      let count = Swift.min(buffer.count - offset, Int(Int32.max))
      try check(
        MPI_Allreduce(cmpi_in_place(), buffer.baseAddress! + offset, Int32(count), cmpi_float(), cmpi_sum(), cmpi_comm_world()),
        "MPI_Allreduce")
      offset += count
    }
  }

  public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws {
    var offset = 0
    while offset < buffer.count {
      let count = Swift.min(buffer.count - offset, Int(Int32.max))
      try check(MPI_Bcast(buffer.baseAddress! + offset, Int32(count), cmpi_float(), Int32(root), cmpi_comm_world()), "MPI_Bcast")
      offset += count
    }
  }

  public func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] {
    guard bytes.count <= Int(Int32.max) else {
      throw CommunicatorError.library("allGather: \(bytes.count) bytes exceed MPI's Int32 count")
    }
    var length = Int32(bytes.count)
    var lengths = [Int32](repeating: 0, count: size)
    try check(MPI_Allgather(&length, 1, cmpi_int(), &lengths, 1, cmpi_int(), cmpi_comm_world()), "MPI_Allgather")
    var offsets = [Int32](repeating: 0, count: size)
    var total = 0
    for rank in 0..<size {
      offsets[rank] = Int32(clamping: total)
      total += Int(lengths[rank])
    }
    guard total <= Int(Int32.max) else { throw CommunicatorError.library("allGather: \(total) bytes in all exceed MPI's Int32 count") }
    var gathered = [UInt8](repeating: 0, count: total)
    var send = bytes
    try send.withUnsafeMutableBytes { sendBuffer in
      try gathered.withUnsafeMutableBytes { receiveBuffer in
        try check(
          MPI_Allgatherv(
            sendBuffer.baseAddress, length, cmpi_byte(), receiveBuffer.baseAddress, &lengths, &offsets, cmpi_byte(),
            cmpi_comm_world()), "MPI_Allgatherv")
      }
    }
    return (0..<size).map { Array(gathered[Int(offsets[$0])..<(Int(offsets[$0]) + Int(lengths[$0]))]) }
  }

  /// Prints `message` with the rank on standard error and kills every rank (`MPI_Abort`, exit code 1).
  public func abort(message: String) {
    FileHandle.standardError.write(Data("rank \(rank) of \(size): \(message)\n".utf8))
    MPI_Abort(cmpi_comm_world(), 1)
    exit(1)
  }

  /// Ends MPI (`MPI_Finalize`) after a barrier; later collectives are invalid.
  public func finalize() {
    guard !finalized else { return }
    finalized = true
    MPI_Barrier(cmpi_comm_world())
    MPI_Finalize()
  }

  private func check(_ status: Int32, _ call: String) throws {
    guard status == cmpi_success() else { throw CommunicatorError.library("\(call) failed with code \(status) on rank \(rank)") }
  }
}
#endif
