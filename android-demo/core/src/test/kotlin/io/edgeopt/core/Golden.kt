package io.edgeopt.core

import org.json.JSONArray
import org.json.JSONObject
import java.io.File
import java.nio.file.Files

/** Layout version of goldens.json this test code reads (scripts/make_android_goldens.py `GOLDEN_FORMAT`). */
const val GOLDEN_FORMAT = 3
const val REGENERATE = "the goldens are stale; regenerate them from a current bundle: " +
    "python scripts/make_android_goldens.py --bundle BUNDLE --out android-demo/core/src/test/resources/golden/"

/** The golden files written by scripts/make_android_goldens.py from a real bundle (test resources). */
object Golden {
    val json: JSONObject by lazy { JSONObject(text("goldens.json")) }
    val bundle: JSONObject get() = json.getJSONObject("bundle")
    val labels: List<String> get() = bundle.getJSONArray("labels").strings()
    val maxSeqLen: Int get() = bundle.getInt("max_seq_len")
    val fingerprint: String get() = bundle.getString("fingerprint")
    val cases: List<JSONObject> get() = json.getJSONArray("cases").objects()
    val validCases: List<JSONObject> get() = cases.filter { !it.has("error") }
    /** The fixed secret the golden cache file and keys were made with (a real install makes its own). */
    val secret: ByteArray get() = hex(json.getJSONObject("cache").getString("secret_hex"))
    val tokenizer: WordPieceTokenizer by lazy { WordPieceTokenizer.fromJson(text("tokenizer.json"), maxSeqLen, "golden/tokenizer.json") }

    fun text(name: String): String = bytes(name).toString(Charsets.UTF_8)

    fun bytes(name: String): ByteArray =
        Golden::class.java.getResourceAsStream("/golden/$name")?.use { it.readBytes() }
            ?: error("test resource golden/$name is missing; $REGENERATE")

    /** A copy of a golden file in a new temporary directory (tests may write to it). */
    fun copy(name: String, dir: File = Files.createTempDirectory("golden").toFile()): File =
        File(dir, name).also { it.writeBytes(bytes(name)) }

    /** The golden bundle manifest, read without verification (the model files are not in the goldens). */
    val manifest: Manifest by lazy {
        val dir = Files.createTempDirectory("golden-bundle").toFile()
        copy("manifest.json", dir)
        readManifest(DirectoryBundle(dir))
    }
}

fun hex(s: String): ByteArray = ByteArray(s.length / 2) { s.substring(2 * it, 2 * it + 2).toInt(16).toByte() }

fun JSONArray.strings(): List<String> = (0 until length()).map { getString(it) }
fun JSONArray.objects(): List<JSONObject> = (0 until length()).map { getJSONObject(it) }
fun JSONArray.longs(): LongArray = LongArray(length()) { getLong(it) }
fun JSONArray.ints(): IntArray = IntArray(length()) { getInt(it) }
fun JSONArray.doubles(): DoubleArray = DoubleArray(length()) { getDouble(it) }

/** JUnit's Kotlin `assertThrows<T>` (Debian's junit5 jar leaves the Kotlin helpers out). */
inline fun <reified T : Throwable> assertThrows(noinline block: () -> Unit): T =
    org.junit.jupiter.api.Assertions.assertThrows(T::class.java) { block() }
