import ArgumentParser
import QuadraCore

@main
struct QuadraNetCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "quadranet",
    abstract: "Build, train, benchmark and deploy quadratic neural networks (QuadraNet) for vision.",
    subcommands: [TrainCommand.self, EvalCommand.self, ModelsCommand.self, BenchCommand.self, InfoCommand.self, ExportCommand.self, PredictCommand.self, SearchCommand.self])
}

/// Prints how this binary was built and what it will use.
struct InfoCommand: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "info", abstract: "Show build and machine facts.")

  func run() throws {
    #if QUADRANET_PORTABLE
      let build = "portable (no host-specific vector extensions)"
    #elseif QUADRANET_TARGET_CPU
      let build = "for the CPU QUADRANET_TARGET_CPU named at build time"
    #else
      let build = "native (-target-cpu native)"
    #endif
    let cpu = CPUInfo.current
    print("build: \(build); its vector ISA: \(CPUInfo.buildVectorISA)")
    print("processor: \(cpu)")
    print("kernels: \(cpu.kernelVectorISA) (GEMM micro-kernel \(GEMM.microKernel))")
    print("threads: \(Parallel.threadCount)")
  }
}
