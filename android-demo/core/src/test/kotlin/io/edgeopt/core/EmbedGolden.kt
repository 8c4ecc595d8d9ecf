package io.edgeopt.core

import org.json.JSONArray
import org.json.JSONObject
import java.io.File
import java.nio.file.Files

/** Layout version of embed/embed_goldens.json this test code reads (scripts/make_android_goldens.py `EMBED_GOLDEN_FORMAT`). */
const val EMBED_GOLDEN_FORMAT = 1
const val REGENERATE_EMBED = "the embed goldens are stale; regenerate them from a current embed bundle: " +
    "python scripts/make_android_goldens.py --embed-bundle BUNDLE --out android-demo/core/src/test/resources/golden/ " +
    "(BUNDLE: edgeopt build --task embed --profile pixel8)"

/** The embed goldens written by scripts/make_android_goldens.py --embed-bundle from a real embed bundle (golden/embed/). */
object EmbedGolden {
    val json: JSONObject by lazy { JSONObject(text("embed_goldens.json")) }
    val bundle: JSONObject get() = json.getJSONObject("bundle")
    val dim: Int get() = bundle.getInt("dim")
    val fingerprint: String get() = bundle.getString("fingerprint")
    val backends: JSONObject get() = json.getJSONObject("backends")
    val backendNames: List<String> get() = backends.keys().asSequence().map { it.toString() }.toList()
    val cases: List<JSONObject> get() = json.getJSONArray("cases").objects()
    val validCases: List<JSONObject> get() = cases.filter { !it.has("error") }
    val queries: List<JSONObject> get() = json.getJSONArray("queries").objects()
    val index: JSONObject get() = json.getJSONObject("index")
    val indexTexts: Map<String, String> get() = index.getJSONArray("texts").let { a -> (0 until a.length()).associate { a.getJSONArray(it).getString(0) to a.getJSONArray(it).getString(1) } }
    val precisions: List<String> get() = index.getJSONObject("files").keys().asSequence().map { it.toString() }.toList()
    val secret: ByteArray get() = hex(json.getJSONObject("cache").getString("secret_hex"))
    val tokenizer: WordPieceTokenizer by lazy {
        WordPieceTokenizer.fromJson(text("tokenizer.json"), bundle.getInt("max_seq_len"), "golden/embed/tokenizer.json")
    }

    fun text(name: String): String = bytes(name).toString(Charsets.UTF_8)

    fun bytes(name: String): ByteArray =
        EmbedGolden::class.java.getResourceAsStream("/golden/embed/$name")?.use { it.readBytes() }
            ?: error("test resource golden/embed/$name is missing; $REGENERATE_EMBED")

    /** A copy of a golden file in a new temporary directory (tests may write to it). */
    fun copy(name: String, dir: File = Files.createTempDirectory("embed-golden").toFile()): File =
        File(dir, name).also { it.writeBytes(bytes(name)) }

    /** A copy of the index file of [precision]. */
    fun indexFile(precision: String): File = copy(index.getJSONObject("files").getJSONObject(precision).getString("file"))

    /** The golden embed manifest, read without verification (the model files are not in the goldens). */
    val manifest: Manifest by lazy {
        val dir = Files.createTempDirectory("embed-bundle").toFile()
        copy("manifest.json", dir)
        readManifest(DirectoryBundle(dir))
    }

    fun quantization(backend: String): Quantization? =
        backends.getJSONObject(backend).optJSONObject("output_quantization")?.let { Quantization(it.getDouble("scale"), it.getInt("zero_point")) }

    /** What the model returned for one text of the goldens (raw int8 codes for an int8 output, else float32). */
    fun raw(entry: JSONObject, backend: String): Logits {
        val quant = quantization(backend)
        return if (quant != null) Logits.Quantized(listOf(entry.getJSONArray("raw_int8").ints()), quant)
        else Logits.Float32(listOf(float32s(entry.getString("raw_f32"))))
    }

    fun float32s(base64: String): FloatArray = float32FromBase64(base64) ?: error("not base64 float32: ${base64.take(20)}")

    /** Python's unit vector of one text and backend. */
    fun vector(entry: JSONObject): FloatArray = float32s(entry.getString("vector_f32"))
}

/**
 * A model that answers the Python-recorded raw output for exactly the ids Python fed the real model (the golden
 * cases and queries), and fails for any other input: so a test also proves the ids reaching the backend are Python's.
 */
class ReplayEmbedModel(override val backend: String) : TextModel {
    var calls = 0
    var rows = 0
    private val quant = EmbedGolden.quantization(backend)
    private val outputs: Map<List<Long>, JSONObject> = (EmbedGolden.validCases + EmbedGolden.queries).associate { c ->
        c.getJSONArray("input_ids").longs().toList() to c.getJSONObject("backends").getJSONObject(backend)
    }

    override fun run(inputIds: List<LongArray>, attentionMask: List<LongArray>): Logits {
        calls++
        rows += inputIds.size
        val entries = inputIds.map { ids -> outputs[ids.toList()] ?: throw AssertionError("the model got ids Python never produced: ${ids.take(12)}") }
        return if (quant != null) Logits.Quantized(entries.map { it.getJSONArray("raw_int8").ints() }, quant)
        else Logits.Float32(entries.map { EmbedGolden.float32s(it.getString("raw_f32")) })
    }
}

fun JSONArray.hits(): List<SearchHit> = (0 until length()).map { getJSONArray(it).let { p -> SearchHit(p.getString(0), p.getDouble(1)) } }
