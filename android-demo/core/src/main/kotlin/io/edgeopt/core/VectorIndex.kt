package io.edgeopt.core

import java.io.File
import java.nio.file.Files

/** `PRAGMA application_id` of every edgeopt index file ("edix"): the runtime's `INDEX_APPLICATION_ID`. */
const val INDEX_APPLICATION_ID = 0x65646978

/** Index schema version (`PRAGMA user_version`) this core reads: the runtime's `INDEX_SCHEMA_VERSION`. */
const val INDEX_SCHEMA_VERSION = 1

/** How an index stores its vectors (the runtime's `PRECISIONS`). */
val INDEX_PRECISIONS: List<String> = listOf("int8", "float16")

/** One search result: the row's id and its cosine similarity to the query. */
data class SearchHit(val id: String, val score: Double)

/** What an index file holds (the runtime's `IndexStats`, less the path and file size). */
data class IndexStats(val vectors: Int, val withText: Int, val dim: Int, val precision: String, val fingerprint: String)

/**
 * IEEE 754 half precision ([bits], the low 16 bits) to float32, exactly (every half is a float32): what numpy's
 * `astype(float32)` of `<f2` does. Subnormals, signed zeros, infinities and NaN included; no Java 20 API needed.
 */
fun halfToFloat(bits: Int): Float {
    val sign = if (bits and 0x8000 != 0) -1.0f else 1.0f
    val exponent = (bits ushr 10) and 0x1F
    val mantissa = bits and 0x3FF
    return when (exponent) {
        0 -> sign * Math.scalb(mantissa.toFloat(), -24) // zero and subnormals: mantissa * 2^-24, exact in float32
        0x1F -> if (mantissa == 0) sign * Float.POSITIVE_INFINITY else Float.NaN
        else -> Float.fromBits(((bits and 0x8000) shl 16) or ((exponent - 15 + 127) shl 23) or (mantissa shl 13))
    }
}

private val SQLITE_MAGIC = "SQLite format 3\u0000".toByteArray(Charsets.US_ASCII)

/**
 * Why [file] is not an edgeopt index this core can open, or null when its header says it is one: an SQLite
 * database whose `application_id` is [INDEX_APPLICATION_ID]. The file is only read (a foreign file is left as it is).
 */
fun indexFileReason(file: File): String? {
    val path = file.toPath()
    if (!Files.exists(path)) return "index $file does not exist; build it with the Python runtime (edgeopt-runtime index add) and ship it with the app"
    if (!Files.isRegularFile(path)) return "index path $file is not a file; choose a file path"
    val header = ByteArray(100)
    val read = Files.newInputStream(path).use { it.readNBytes(header, 0, header.size) }
    if (read == 0) return "$file is an empty file, not an edgeopt index yet; add texts to it with the Python runtime first"
    if (read < 72 || !header.copyOfRange(0, SQLITE_MAGIC.size).contentEquals(SQLITE_MAGIC)) {
        return "$file is not an edgeopt index (not an SQLite database); choose another file"
    }
    val applicationId = java.nio.ByteBuffer.wrap(header, 68, 4).int
    if (applicationId != INDEX_APPLICATION_ID) {
        return "$file is an SQLite file of another application (application_id 0x${Integer.toHexString(applicationId)}), not an edgeopt index; choose another file"
    }
    return null
}

/**
 * A vector index written by the Python runtime's `edgeopt_runtime.Index` (runtime/README.md, "Vector index"), read
 * and searched exactly as it searches: every stored vector decoded (int8 codes times the row's scale, or
 * little-endian float16), each row renormalized, and a query's scores the dot products with the normalized query,
 * best first, ties broken by id in code-point order. The vectors are read once and again only when another
 * connection changed the file (`PRAGMA data_version`). Read-only: the core never writes an index file.
 *
 * Open it with [open]; it refuses a file that is not an edgeopt index, a newer schema, damaged settings or rows,
 * and (with [IndexMismatch]) an index another model filled, whose vectors are not comparable with this bundle's.
 */
class VectorIndex private constructor(
    private val db: SqlDatabase,
    private val location: String,
    /** The fingerprint of the bundle whose vectors the index holds. */
    val fingerprint: String,
    /** Vector width. */
    val dim: Int,
    /** `int8` or `float16`. */
    val precision: String,
    /** Turns text queries into vectors; null when the index was opened for vector queries only. */
    val embedder: TextEmbedder?,
) : AutoCloseable {
    private var ids: List<String> = emptyList()
    private var matrix = FloatArray(0)
    private var seenVersion = -1L

    /** Rows stored. */
    val size: Int get() = sql { db.query("SELECT COUNT(*) FROM items") { it.long(0) }.single().toInt() }

    operator fun contains(id: String): Boolean = sql { db.query("SELECT 1 FROM items WHERE id = ?", id) { true }.isNotEmpty() }

    /** The stored text of [id], or null when the row has none (added as a vector) or does not exist. */
    fun text(id: String): String? = sql { db.query("SELECT text FROM items WHERE id = ?", id) { it.string(0) }.firstOrNull() }

    /** Counts and settings of the file. */
    fun stats(): IndexStats = sql {
        val (vectors, withText) = db.query("SELECT COUNT(*), COUNT(text) FROM items") { it.long(0).toInt() to it.long(1).toInt() }.single()
        IndexStats(vectors, withText, dim, precision, fingerprint)
    }

    /**
     * The [k] rows nearest to a text (embedded by [embedder]), best first.
     *
     * @throws InputError the text is invalid, [k] is not positive, or the index has no embedder.
     */
    fun search(text: String, k: Int = 10): List<SearchHit> {
        val e = embedder ?: throw InputError("this index was opened without an embedder; pass a vector, or open it with a TextEmbedder")
        checkK(k)
        return search(e.embedOne(text), k)
    }

    /**
     * The [k] rows nearest to [query] (a vector of this model; normalized first), best first: `(id, cosine)`, at
     * most [k] and at most [size].
     *
     * @throws InputError [k] is not positive, or the query is not [dim] finite numbers.
     */
    fun search(query: FloatArray, k: Int = 10): List<SearchHit> {
        checkK(k)
        if (query.size != dim || !query.all { it.isFinite() }) {
            throw InputError("a query vector must be $dim finite numbers, got shape (${query.size},)")
        }
        val q = normalizeRows(listOf(query)).single()
        load()
        val n = ids.size
        val scores = DoubleArray(n) { row ->
            var dot = 0.0
            val base = row * dim
            for (j in 0 until dim) dot += matrix[base + j].toDouble() * q[j].toDouble()
            dot
        }
        val order = (0 until n).sortedWith { a, b ->
            val byScore = scores[b].compareTo(scores[a])
            if (byScore != 0) byScore else PyCompat.codePointOrder.compare(ids[a], ids[b])
        }
        return order.take(minOf(k, n)).map { SearchHit(ids[it], scores[it]) }
    }

    private fun checkK(k: Int) {
        if (k < 1) throw InputError("k $k must be a positive integer")
    }

    /** Reads every vector into a float32 matrix, unless no connection changed the file since the last read. */
    private fun load() = sql {
        val version = db.query("PRAGMA data_version") { it.long(0) }.single()
        if (version == seenVersion) return@sql
        val rows = db.query("SELECT id, vector, scale FROM items ORDER BY id") { r -> Triple(r.string(0)!!, r.blob(1), r.double(2)) }
        val width = if (precision == "float16") 2 else 1
        val decoded = ArrayList<FloatArray>(rows.size)
        for ((id, blob, scale) in rows) {
            if (blob == null || blob.size != width * dim) {
                throw IndexInvalid("$location: index rows are not $dim $precision values each (row '$id' has ${blob?.size ?: 0} bytes); the file is damaged: rebuild it")
            }
            val row = if (precision == "float16") {
                FloatArray(dim) { halfToFloat((blob[2 * it].toInt() and 0xFF) or ((blob[2 * it + 1].toInt() and 0xFF) shl 8)) }
            } else {
                // numpy: float32(code) * float32(scale), one float32 rounding.
                val s = scale.toFloat()
                FloatArray(dim) { blob[it].toFloat() * s }
            }
            if (!row.all { it.isFinite() }) throw IndexInvalid("$location: row '$id' holds values that are not finite; the file is damaged: rebuild it")
            decoded += row
        }
        // Rounding moved each vector off unit length a little; renormalized, scores stay cosines.
        val unit = normalizeRows(decoded)
        matrix = FloatArray(unit.size * dim).also { m -> unit.forEachIndexed { i, row -> row.copyInto(m, i * dim) } }
        ids = rows.map { it.first }
        seenVersion = version
    }

    override fun close() = db.close()

    private inline fun <T> sql(block: () -> T): T = try {
        block()
    } catch (e: EdgeoptException) {
        throw e
    } catch (e: Exception) {
        throw IndexInvalid("$location: ${e.message?.lineSequence()?.firstOrNull() ?: e.javaClass.simpleName}; the index file is damaged or unreadable: rebuild it", e)
    }

    companion object {
        /**
         * Opens an index file for [embedder]'s bundle with [opener] (`JdbcSqlDatabase::open`, `AndroidSqlDatabase::open`),
         * after checking its header ([indexFileReason]): a foreign file is never opened and left as it was.
         *
         * @throws IndexInvalid the file is missing, not an edgeopt index, of a newer schema, or damaged.
         * @throws IndexMismatch another model filled it.
         */
        fun open(file: File, embedder: TextEmbedder, opener: (File) -> SqlDatabase): VectorIndex =
            open(file, embedder.fingerprint, embedder.dim, opener, embedder)

        /** [open] for vector queries only, checked against a bundle's [fingerprint] and [dim]. */
        fun open(file: File, fingerprint: String, dim: Int, opener: (File) -> SqlDatabase, embedder: TextEmbedder? = null): VectorIndex {
            indexFileReason(file)?.let { throw IndexInvalid(it) }
            val location = file.path
            val db = try {
                opener(file)
            } catch (e: Exception) {
                throw IndexInvalid("$location cannot be opened (${e.message?.lineSequence()?.firstOrNull()}); choose another file", e)
            }
            try {
                return check(db, location, fingerprint, dim, embedder)
            } catch (e: Throwable) {
                db.close()
                throw e
            }
        }

        private fun check(db: SqlDatabase, location: String, fingerprint: String, dim: Int, embedder: TextEmbedder?): VectorIndex {
            fun <T> read(block: () -> T): T = try {
                block()
            } catch (e: EdgeoptException) {
                throw e
            } catch (e: Exception) {
                throw IndexInvalid("$location is not a readable edgeopt index (${e.message?.lineSequence()?.firstOrNull()}); rebuild the index", e)
            }
            val version = read { db.query("PRAGMA user_version") { it.long(0) }.single() }
            if (version > INDEX_SCHEMA_VERSION) {
                throw IndexInvalid("$location has index schema $version, newer than this app reads ($INDEX_SCHEMA_VERSION); update the app")
            }
            val meta = read { db.query("SELECT key, value FROM meta") { (it.string(0) ?: "") to it.string(1) }.toMap() }
            if (meta.isEmpty()) throw IndexInvalid("$location is an empty index (no model recorded); add texts to it with the Python runtime first")
            val storedDim = meta["dim"]?.toIntOrNull()
            val precision = meta["precision"]
            val stored = meta["fingerprint"]
            if (meta.keys != setOf("fingerprint", "dim", "precision") || precision !in INDEX_PRECISIONS || storedDim == null || storedDim < 1 || stored == null) {
                throw IndexInvalid("$location: the index's settings are damaged (${meta.keys.sortedWith(PyCompat.codePointOrder)}); rebuild the index")
            }
            if (stored != fingerprint) {
                val count = read { db.query("SELECT COUNT(*) FROM items") { it.long(0) }.single() }
                throw IndexMismatch(
                    "index $location holds $count vectors of model ${stored.take(12)}, not of this bundle's ${fingerprint.take(12)}; " +
                        "re-embed its texts with this bundle (Python: Index(path, bundle, reembed=True), or --reembed) and ship that file, or build a new index",
                )
            }
            if (storedDim != dim) {
                throw IndexInvalid("$location: the index says dim $storedDim, the bundle's vectors have $dim; the file is damaged: rebuild the index")
            }
            return VectorIndex(db, location, stored, storedDim, precision!!, embedder)
        }
    }
}
