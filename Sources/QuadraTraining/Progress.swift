import Foundation

/// Turns ``TrainingEvent``s into progress text.
///
/// On a terminal the current line is redrawn in place ("\r", then erase to the end of the line) at
/// most every `refreshInterval` seconds; otherwise (a log file, a pipe) a plain line is written
/// every `plainInterval` seconds, so logs stay readable. Each finished epoch gets a line of its own.
public final class ProgressPrinter {
  public let isTerminal: Bool
  public let refreshInterval: TimeInterval
  public let plainInterval: TimeInterval
  private let write: (String) -> Void
  private let clock: () -> Date
  private var lastWrite: Date?
  private var lineIsOpen = false

  public init(
    isTerminal: Bool, refreshInterval: TimeInterval = 0.1, plainInterval: TimeInterval = 15,
    clock: @escaping () -> Date = Date.init, write: @escaping (String) -> Void
  ) {
    self.isTerminal = isTerminal
    self.refreshInterval = refreshInterval
    self.plainInterval = plainInterval
    self.clock = clock
    self.write = write
  }

  public func handle(_ event: TrainingEvent) {
    let now = clock()
    switch event {
    case .batch(let progress):
      let interval = isTerminal ? refreshInterval : plainInterval
      let isLast = progress.batch == progress.batchesPerEpoch
      if let lastWrite, now.timeIntervalSince(lastWrite) < interval, !(isTerminal && isLast) { return }
      if lastWrite == nil && !isTerminal {
        // The first plain line waits one interval too, so short epochs do not log every batch.
        lastWrite = now
        return
      }
      lastWrite = now
      let line = Self.format(progress)
      if isTerminal {
        write("\r" + line + "\u{1B}[K")
        lineIsOpen = true
      } else {
        write(line + "\n")
      }
    case .evaluating(let epoch):
      if isTerminal {
        write("\r" + "epoch \(epoch): evaluating on the test split…" + "\u{1B}[K")
        lineIsOpen = true
      }
    case .epochFinished(let metrics, let totalEpochs):
      let line = Self.format(metrics, totalEpochs: totalEpochs)
      write((isTerminal && lineIsOpen ? "\r" : "") + line + (isTerminal ? "\u{1B}[K" : "") + "\n")
      lineIsOpen = false
      lastWrite = isTerminal ? nil : now
    }
  }

  /// `epoch 2/10  batch 120/468  loss 0.4123  812 img/s  ETA 3m12s`
  public static func format(_ progress: TrainingProgress) -> String {
    let width = String(progress.batchesPerEpoch).count
    let batch = String(progress.batch).leftPadded(to: width)
    return "epoch \(progress.epoch)/\(progress.epochs)  batch \(batch)/\(progress.batchesPerEpoch)  "
      + String(format: "loss %.4f  %.0f img/s  ETA ", progress.loss, progress.imagesPerSecond)
      + duration(progress.etaSeconds)
  }

  /// `epoch 2/10: train loss 0.4123, test accuracy 91.23%, 52.1 s, 812 img/s`
  public static func format(_ metrics: EpochMetrics, totalEpochs: Int) -> String {
    "epoch \(metrics.epoch)/\(totalEpochs): "
      + String(
        format: "train loss %.4f, test accuracy %.2f%%, %.1f s, %.0f img/s", metrics.trainLoss,
        100 * metrics.testAccuracy, metrics.seconds, metrics.imagesPerSecond)
  }

  /// `45s`, `3m12s`, `1h05m`.
  public static func duration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let total = Int(seconds.rounded())
    if total < 60 { return "\(total)s" }
    if total < 3600 { return "\(total / 60)m\(String(total % 60).leftPadded(to: 2, with: "0"))s" }
    return "\(total / 3600)h\(String(total % 3600 / 60).leftPadded(to: 2, with: "0"))m"
  }
}

extension String {
  func leftPadded(to width: Int, with pad: Character = " ") -> String {
    count >= width ? self : String(repeating: pad, count: width - count) + self
  }
}
