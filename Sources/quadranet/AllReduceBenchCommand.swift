import ArgumentParser
import Foundation
import QuadraDistributed

/// `quadranet bench allreduce`: all-reduce bandwidth per message size, under `mpirun` or across threads.
struct AllReduceBenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "allreduce",
    abstract: "All-reduce (sum of float32) time and bandwidth per message size.",
    discussion: """
      Run under mpirun with a build that has the MPI trait, e.g. \
      `mpirun -np 2 .build/release/quadranet bench allreduce`; rank 0 prints. With --in-process N the \
      ranks are N threads of this process (no MPI needed). Bus bandwidth is 2(N−1)/N × size / time.
      """)

  @Option(help: "Comma-separated message sizes in bytes, 4...1G each, at most 64 (suffixes K, M, G = 1024^k).")
  var sizes = "4K,64K,1M,4M,25M,100M"
  @Option(parsing: .unconditional, help: "Measure N threads of this process instead of MPI ranks, 2...64.")
  var inProcess: Int?
  @Flag(help: "Print one JSON object instead of a table.") var json = false

  func validate() throws {
    try FlagCheck.integer(inProcess, in: 2...64, "--in-process")
    do { _ = try AllReduceBenchmark.parseSizes(sizes) } catch { throw ValidationError("\(error)") }
  }

  func run() throws {
    let sizes = try AllReduceBenchmark.parseSizes(sizes)
    if let inProcess {
      let group = try InProcessCommunicator.makeGroup(size: inProcess)
      final class Box: @unchecked Sendable { var report: Result<AllReduceBenchmark.Report, any Error>? }
      let box = Box()
      let finished = DispatchGroup()
      for communicator in group {
        finished.enter()
        Thread {
          defer { finished.leave() }
          let outcome = Result { try AllReduceBenchmark.run(sizes: sizes, over: communicator) }
          if case .failure(let error) = outcome { communicator.abort(message: "\(error)") }
          // Written by rank 0's thread only, read after every thread has left the group.
          if communicator.rank == 0 { box.report = outcome }
        }.start()
      }
      finished.wait()
      try show(try box.report!.get())
      return
    }
    try DistributedLaunch.checkLaunch(distributed: true)
    let communicator = try DistributedLaunch.makeCommunicator()
    do {
      let report = try AllReduceBenchmark.run(sizes: sizes, over: communicator) { result in
        if communicator.rank == 0 && !json { print(Self.format(result)) }
      }
      if communicator.rank == 0 {
        if json { try Terminal.printJSON(report) } else { print("\(report.ranks) rank(s)") }
      }
    } catch {
      communicator.abort(message: "\(error)")
      throw error
    }
    DistributedLaunch.finish(communicator)
  }

  func show(_ report: AllReduceBenchmark.Report) throws {
    if json { return try Terminal.printJSON(report) }
    for result in report.results { print(Self.format(result)) }
    print("\(report.ranks) thread rank(s) in one process")
  }

  static func format(_ result: AllReduceBenchmark.Result) -> String {
    String(
      format: "%12d B  %10.1f us  algorithm %7.2f GB/s  bus %7.2f GB/s  (%d iterations)", result.bytes,
      result.seconds * 1e6, result.algorithmGBps, result.busGBps, result.iterations)
  }
}
