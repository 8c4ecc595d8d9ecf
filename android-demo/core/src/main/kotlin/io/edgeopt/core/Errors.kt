package io.edgeopt.core

/**
 * Every error the core raises on purpose. Like the Python runtime's exceptions (same names), each message is one
 * line that names the file or value and says how to fix it, so the app can show it as is.
 */
sealed class EdgeoptException(message: String, cause: Throwable? = null) : Exception(message, cause)

/** A bundle is incomplete, corrupted, tampered with, or of a schema this core cannot read. */
class BundleInvalid(message: String, cause: Throwable? = null) : EdgeoptException(message, cause)

/** A text or option is not acceptable (empty, whitespace only, out of range). */
class InputError(message: String) : EdgeoptException(message)

/** The result cache cannot be used: bad bounds, a file from a newer runtime, an SQL failure. */
class CacheError(message: String, cause: Throwable? = null) : EdgeoptException(message, cause)

/** A vector index file cannot be used: not an edgeopt index, damaged, or of a newer schema (the runtime's `IndexInvalid`). */
open class IndexInvalid(message: String, cause: Throwable? = null) : EdgeoptException(message, cause)

/** The index was filled by another model (fingerprint) than the one it is opened with (the runtime's `IndexMismatch`). */
class IndexMismatch(message: String) : IndexInvalid(message)

/** The model backend failed or returned something the manifest does not allow. */
class ModelError(message: String, cause: Throwable? = null) : EdgeoptException(message, cause)
