import ArgumentParser
import Foundation
import QuadraDistributed

#if MPI
  import QuadraMPI
#endif

/// How `--distributed` finds its communicator: Open MPI in builds with the `MPI` trait.
enum DistributedLaunch {
  /// What to do when this binary was built without MPI.
  static let missingTrait =
    "--distributed needs a build with the MPI trait: install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin "
    + "libopenmpi-dev), build with `swift build -c release --traits MPI`, and start the ranks with "
    + "`mpirun -np N .build/release/quadranet train --distributed …`"

  /// Environment variables in which MPI launchers (Open MPI's mpirun, Hydra/PMI, PMIx) give the number of ranks.
  static let worldSizeVariables = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]

  /// The number of ranks a launcher started, read from its environment (nil when not launched by one).
  static func launcherWorldSize(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Int? {
    worldSizeVariables.lazy.compactMap { environment[$0].flatMap { Int($0) } }.first
  }

  /// Whether this binary can run `--distributed`.
  static var isAvailable: Bool {
    #if MPI
      return true
    #else
      return false
    #endif
  }

  /// The communicator of this process: MPI's world (after `MPI_Init`).
  static func makeCommunicator() throws -> any Communicator {
    #if MPI
      return try MPICommunicator()
    #else
      throw ValidationError(missingTrait)
    #endif
  }

  /// Ends MPI after a successful run (all ranks reach it).
  static func finish(_ communicator: any Communicator) {
    #if MPI
      (communicator as? MPICommunicator)?.finalize()
    #endif
  }

  /// Rejects a run that a multi-rank launcher started without `--distributed`: every rank would
  /// train the whole run on its own and write the same directory.
  static func checkLaunch(distributed: Bool) throws {
    if !distributed, let size = launcherWorldSize(), size > 1 {
      throw ValidationError(
        "this process is one of \(size) ranks started by an MPI launcher, but --distributed was not given: each rank "
          + "would train the whole run alone and write the same output directory; add --distributed")
    }
  }
}
