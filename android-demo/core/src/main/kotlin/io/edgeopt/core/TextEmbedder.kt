package io.edgeopt.core

import org.json.JSONException
import org.json.JSONObject
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.util.Base64
import kotlin.math.sqrt

/** One text's vector and how it was made (the Python runtime's `Embedding`). */
class Embedding(
    /** `float32 [dim]` of unit length (a zero vector stays zero). */
    val vector: FloatArray,
    /** True when it came from the result cache. */
    val cached: Boolean,
    /** True when the text had more than `maxSeqLen` tokens and the tail was dropped. */
    val truncated: Boolean,
)

/**
 * Each row divided by its L2 norm, in float32 (the runtime's `normalize_rows`); a row of norm 0 stays 0. The squares
 * are summed as numpy's `add.reduce` sums a contiguous float32 axis ([pairwiseSum]), so the vectors are Python's
 * bit for bit (on the goldens: every value of every vector); the contract the tests hold is 1e-5.
 */
fun normalizeRows(rows: List<FloatArray>): List<FloatArray> = rows.map { row ->
    val norm = sqrt(pairwiseSum(FloatArray(row.size) { row[it] * row[it] }, 0, row.size))
    if (norm > 0f) FloatArray(row.size) { row[it] / norm } else FloatArray(row.size)
}

/**
 * numpy's pairwise summation of `n` float32 values from [from] (`pairwise_sum` in its loops): fewer than 8 in
 * order; up to 128 with 8 interleaved accumulators; more split in two halves (the first a multiple of 8).
 */
internal fun pairwiseSum(a: FloatArray, from: Int, n: Int): Float {
    if (n < 8) {
        var res = 0f
        for (i in from until from + n) res += a[i]
        return res
    }
    if (n <= 128) {
        val r = FloatArray(8) { a[from + it] }
        var i = 8
        while (i < n - n % 8) {
            for (j in 0 until 8) r[j] += a[from + i + j]
            i += 8
        }
        var res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while (i < n) res += a[from + i++]
        return res
    }
    val half = n / 2 - (n / 2) % 8
    return pairwiseSum(a, from, half) + pairwiseSum(a, from + half, n - half)
}

/** `float32` little-endian bytes of [vector], base64: the runtime's cache encoding of a vector (`embedding_f32`). */
fun float32Base64(vector: FloatArray): String {
    val bytes = ByteBuffer.allocate(4 * vector.size).order(ByteOrder.LITTLE_ENDIAN)
    vector.forEach { bytes.putFloat(it) }
    return Base64.getEncoder().encodeToString(bytes.array())
}

/** The float32 values of [float32Base64] text, or null when it is not base64 of a multiple of 4 bytes. */
fun float32FromBase64(text: String): FloatArray? {
    val bytes = try {
        Base64.getDecoder().decode(text)
    } catch (e: IllegalArgumentException) {
        return null
    }
    if (bytes.size % 4 != 0) return null
    val buffer = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN)
    return FloatArray(bytes.size / 4) { buffer.float }
}

/**
 * The cache value of one vector, as the runtime stores it: `{"embedding_f32": base64, "truncated": bool}`, written
 * like Python's `json.dumps(value, separators=(",", ":"), sort_keys=True)`.
 */
fun embeddingCacheValue(vector: FloatArray, truncated: Boolean): String =
    "{\"embedding_f32\":${PyCompat.jsonString(float32Base64(vector))},\"truncated\":$truncated}"

/** The vector of a cache value, or null when the value is not one of [dim] finite float32s (a miss, as in the runtime). */
fun embeddingFromCache(json: String, dim: Int): Embedding? = try {
    val o = JSONObject(json)
    val encoded = o.opt("embedding_f32") as? String
    val truncated = o.opt("truncated") as? Boolean
    val vector = encoded?.let(::float32FromBase64)
    if (vector == null || truncated == null || vector.size != dim || !vector.all { it.isFinite() }) null
    else Embedding(vector, cached = true, truncated = truncated)
} catch (e: JSONException) {
    null
}

/**
 * An `embed` bundle ready to turn texts into unit vectors (the Python runtime's `TextEmbedder`): tokenizer, a
 * [TextModel] whose rows are the unnormalized `embedding`, and an optional [ResultCache] holding each text's vector
 * under the same kind of key as a classifier's answers (fingerprint, artifact and backend, the text). Build it with
 * [load]. Not thread-safe: use one per thread, or synchronize.
 */
class TextEmbedder(
    val manifest: Manifest,
    val tokenizer: WordPieceTokenizer,
    private val model: TextModel,
    val cache: ResultCache? = null,
) : AutoCloseable {
    private val spec: EmbeddingSpec = manifest.embedding
        ?: throw BundleInvalid("bundle task '${manifest.task}' has no embedding spec; load it as a classifier (TextClassifier.load)")
    private val keyOptions = keyOptions(model.backend, manifest.artifactFor(model.backend)?.first ?: "")

    /** Width of every vector. */
    val dim: Int get() = spec.dim

    /** The model's fingerprint: vectors of two bundles are comparable only when theirs are equal. */
    val fingerprint: String get() = manifest.fingerprint

    /** `"onnx"` or `"tflite"`. */
    val backend: String get() = model.backend

    /** The last cache failure; the cache is then skipped (embedding never fails because of the cache). */
    var cacheError: CacheError? = null
        private set

    /** The unit vector of one text. @throws InputError for an empty text. */
    fun embedOne(text: String): FloatArray = embedClean(listOf(cleanText(text))).single().vector

    /** The unit vectors of texts, `[texts.size][dim]`. @throws InputError naming the bad text's index. */
    fun embed(texts: List<String>): List<FloatArray> = embedDetails(texts).map { it.vector }

    /** [embed], saying for each text whether it came from the cache and whether it was truncated. */
    fun embedDetails(texts: List<String>): List<Embedding> {
        if (texts.isEmpty()) throw InputError("texts is empty; pass at least one text")
        return embedClean(texts.mapIndexed { i, t -> cleanText(t, i) })
    }

    /**
     * The unit vectors of a model output for [batch] texts (the runtime's shape check and `normalize_rows`).
     *
     * @throws ModelError the output is not `[batch, dim]`.
     */
    fun vectors(raw: Logits, batch: Int = raw.rows): List<FloatArray> {
        val rows = raw.toFloat32()
        if (rows.size != batch || rows.any { it.size != dim }) {
            val shape = "(${rows.size}, ${rows.firstOrNull()?.size ?: 0})"
            throw ModelError("the $backend model returned an embedding of shape $shape, expected ($batch, $dim); rebuild the bundle")
        }
        return normalizeRows(rows)
    }

    /** The cache key of a text for this bundle and backend. @throws InputError the text is invalid, or there is no cache. */
    fun cacheKey(text: String): String = keyOf(cleanText(text))

    private fun keyOf(cleaned: String): String {
        val secret = cache?.secret ?: throw InputError("this embedder has no result cache; pass one to get cache keys")
        return cacheKey(secret, manifest.fingerprint, cleaned, keyOptions)
    }

    private fun embedClean(texts: List<String>): List<Embedding> {
        // Equal texts are embedded once, as in the runtime.
        val first = LinkedHashMap<String, Int>()
        texts.forEachIndexed { i, t -> first.putIfAbsent(t, i) }
        val distinct = first.values.toList()
        val useCache = cache != null && cacheError == null
        val keys = if (useCache) distinct.associateWith { keyOf(texts[it]) } else emptyMap()
        val hits = if (useCache) guard { cache.getMany(keys.values.toList()) } ?: emptyMap() else emptyMap()
        val results = HashMap<Int, Embedding>()
        for (i in distinct) keys[i]?.let { hits[it] }?.let { embeddingFromCache(it, dim) }?.let { results[i] = it }
        val todo = distinct.filter { it !in results }
        if (todo.isNotEmpty()) {
            val encodings = todo.map { tokenizer.encode(texts[it]) }
            val vectors = vectors(model.run(encodings.map { it.inputIds }, encodings.map { it.attentionMask }), todo.size)
            todo.forEachIndexed { j, i -> results[i] = Embedding(vectors[j], cached = false, truncated = encodings[j].truncated) }
            if (useCache && cacheError == null) {
                guard {
                    cache.putMany(todo.map { i ->
                        val e = results.getValue(i)
                        ResultCache.Entry(keys.getValue(i), manifest.fingerprint, embeddingCacheValue(e.vector, e.truncated), texts[i])
                    })
                }
            }
        }
        return texts.map { results.getValue(first.getValue(it)) }
    }

    private inline fun <T> guard(block: () -> T): T? = try {
        block()
    } catch (e: CacheError) {
        cacheError = e
        null
    }

    override fun close() {
        model.close()
        cache?.close()
    }

    companion object {
        /**
         * Verifies a bundle, reads its tokenizer and wraps [model]; purges cache entries of other fingerprints.
         *
         * @throws BundleInvalid the bundle fails verification, is not an `embed` bundle, or has no model for [model]'s backend.
         */
        fun load(bundle: BundleFiles, model: TextModel, cache: ResultCache? = null): TextEmbedder {
            val manifest = verifyBundle(bundle)
            if (manifest.task != TASK_EMBED) {
                throw BundleInvalid("bundle ${bundle.location} has task '${manifest.task}', not '$TASK_EMBED'; classify with it: TextClassifier.load")
            }
            if (manifest.artifactFor(model.backend) == null) {
                throw BundleInvalid("bundle ${bundle.location} has no ${model.backend} model (it has: ${manifest.artifacts.values.map { it.format }.toSortedSet().joinToString()}); use another backend")
            }
            val embedder = TextEmbedder(manifest, WordPieceTokenizer.fromBundle(bundle, manifest), model, cache)
            cache?.let { c -> embedder.guard { c.keepOnly(manifest.fingerprint) } }
            return embedder
        }
    }
}
